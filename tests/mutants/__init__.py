"""Realistic wrong answers (mutants) and correct alternatives, one module per chapter.

A module named after the chapter's checks module (`linear_algebra.py` for
`safety_roadmap.checks.linear_algebra`) defines:

- `MUTANTS`: exercise id -> list of wrong implementations a learner could write;
  every one must be rejected by the hidden (thorough) check;
- `ALTERNATIVES`: exercise id -> list of correct implementations written
  differently from the reference; every one must pass.

`tests/test_exercises.py` runs them all and insists each exercise in
`curriculum.yaml` has at least two mutants and one alternative.
"""
