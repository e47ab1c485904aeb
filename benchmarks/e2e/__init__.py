"""The end-to-end benchmark: session-py against what users would write instead.

Server and client run in separate processes over loopback. `python -m benchmarks.e2e --help`
lists the options; `--write` puts the results into `benchmarks/RESULTS.md`.
"""
