"""AI Safety Roadmap: the support library behind the course notebooks.

Kept import-light on purpose: a learner's test cell imports
`safety_roadmap.checks.<chapter>`, and that must answer in well under a second.
"""

__version__ = "0.1.0"
