"""The behaviour both adapters share, written once and run on trio, asyncio and uvloop.

`backend.py` is the face the tests see (`Backend`: serve, connect, and the loop's own
primitives); `peers.py` has peers written by hand on blocking sockets. What only one adapter
has (trio's `MockClock` timer tests, asyncio's `Server` object, uvloop's transports) stays
in `tests/trio` and `tests/asyncio`.
"""
