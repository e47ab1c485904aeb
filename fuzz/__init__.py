"""Long-running fuzzing of `session_core.Connection`: `python -m fuzz.run --minutes N`.

- `fuzz.harness`: one connection driven by a case (hostile peer input, time, local calls),
  with every documented invariant checked after each step.
- `fuzz.strategies`: hypothesis strategies for those cases (hostile JSON text, malformed
  frames, broken handshakes).
- `fuzz.decode`: the same cases decoded from plain bytes, for coverage-guided fuzzers.
- `fuzz.run`: the entry point (hypothesis, or atheris when it is installed).
"""
