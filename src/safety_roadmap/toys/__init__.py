"""The toy worlds chapters run their experiments on: tasks, small models and training recipes.

One module per chapter that needs more than a few lines of them, named like the chapter's checks and
reference modules. They are not answers (those live in `reference/`), so a notebook may import them.
"""
