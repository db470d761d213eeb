"""nbgrader settings for a learner's server: where released chapters come from and submissions go."""
import os

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = os.environ.get("ROADMAP_HUB_COURSE_ID", "ai-safety-roadmap")
c.Exchange.root = os.environ.get("ROADMAP_HUB_EXCHANGE", "/srv/nbgrader/exchange")
# Hand in under the hub's user name. nbgrader would take the account's name, which is the same one
# for everybody where servers run under one account (containers, or local processes in a test).
if os.environ.get("JUPYTERHUB_USER"):
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
