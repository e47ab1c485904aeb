"""session_trio: placeholder until its issue lands."""
