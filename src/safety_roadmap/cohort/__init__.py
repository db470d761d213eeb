"""Instructor cohorts: an nbgrader course directory, graded in parallel, reported per exercise.

    roadmap cohort init DIR [CHAPTER ...]      -> create.init_cohort
    roadmap cohort grade DIR [--workers N]     -> grade.grade_cohort
    roadmap cohort report DIR                  -> report.report_cohort

The directory is an ordinary nbgrader course (`source/`, `release/`, `submitted/`,
`autograded/`, `feedback/`, `gradebook.db`, `nbgrader_config.py`), so plain
`nbgrader` commands work on it too. Our own bookkeeping lives in `.roadmap/`.
Nothing heavy is imported here: each submodule imports nbgrader when it needs it.
"""
