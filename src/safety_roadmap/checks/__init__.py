"""Checks that the notebooks' test cells call: one module per chapter.

Each `check_<exercise>(learner_fn, thorough=False)` compares the learner's
function with the reference on generated cases; `thorough=True` is what the
hidden tests run.
"""
