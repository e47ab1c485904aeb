"""Peers of the end-to-end benchmark: each module serves and calls the echo method.

Every module has `serve(codec)` (an async context manager yielding the port) and
`connect(port, codec)` (an async context manager yielding `await request(data)`), on the
event loop family it is written for. See `benchmarks.e2e.variants.PeerModule`.
"""
