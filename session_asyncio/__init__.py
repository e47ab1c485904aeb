"""session_asyncio: placeholder until its issue lands."""
