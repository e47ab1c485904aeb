"""Fan-out across server processes over one Redis: session_hub against python-socketio.

`python -m benchmarks.hub --help`. See `benchmarks/HUB-RESULTS.md` for what it measures.
"""
