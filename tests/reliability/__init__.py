"""Reliability tests: hostile peers, limits under attack, faults, load and security.

What the tests share is in `support.py`; each scenario runs on both adapters through
`tests.adapters.backend`.
"""
