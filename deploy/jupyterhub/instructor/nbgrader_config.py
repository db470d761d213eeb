"""nbgrader settings for an instructor's server (the formgrader, and `nbgrader` in its terminals).

The course folder's own nbgrader_config.py (written by `roadmap cohort init`: time limits, feedback
without hidden tests) is loaded first; the hub's course folder and exchange then take precedence.
"""
import os

c = get_config()  # noqa: F821
course_dir = os.environ.get("ROADMAP_HUB_COURSE_DIR", "/srv/nbgrader/ai-safety-roadmap")
if os.path.isfile(os.path.join(course_dir, "nbgrader_config.py")):
    load_subconfig(os.path.join(course_dir, "nbgrader_config.py"))  # noqa: F821
c.CourseDirectory.root = course_dir
c.CourseDirectory.course_id = os.environ.get("ROADMAP_HUB_COURSE_ID", "ai-safety-roadmap")
c.Exchange.root = os.environ.get("ROADMAP_HUB_EXCHANGE", "/srv/nbgrader/exchange")
