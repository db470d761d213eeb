"""The one exception type the command line turns into a one-line error."""


class RoadmapError(Exception):
    """A problem with the learner's input or the project layout, worded for a person."""
