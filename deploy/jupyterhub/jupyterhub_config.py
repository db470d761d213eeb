"""JupyterHub configuration for hosting the AI Safety Roadmap as an nbgrader course.

Learners get JupyterLab with the course's Python package (their single-user servers run in an
environment where this repository is installed) and receive chapters through nbgrader's exchange:
the Assignments tab lists what the instructor released; Fetch, Submit and Fetch Feedback go through
the shared exchange folder. Instructors get the same lab plus the formgrader, working on the course
folder `roadmap cohort init` made. Which of the two a user is comes from the hub group `instructors`.

Settings come from the environment, so the same file serves a local try-out and a production hub:

    ROADMAP_HUB_COURSE_DIR   the cohort's course folder (`roadmap cohort init DIR`), instructors only
                             (default /srv/nbgrader/ai-safety-roadmap)
    ROADMAP_HUB_EXCHANGE     nbgrader's exchange folder, shared by everyone (default /srv/nbgrader/exchange)
    ROADMAP_HUB_INSTRUCTORS  comma-separated user names given the formgrader
    ROADMAP_HUB_LEARNERS     comma-separated user names allowed in besides the instructors (optional:
                             leave it empty to let your authenticator's own allow-list decide)
    ROADMAP_HUB_ROLE_CONFIG  where the user servers find this folder's learner/ and instructor/
                             (default: this folder, right for a hub and servers on one machine)

The authenticator and spawner are left to the site (the defaults: system accounts through PAM, one
local process per user); see README.md here for a local try-out and for Zero to JupyterHub.
"""
import os

c = get_config()  # noqa: F821

HERE = os.path.dirname(os.path.abspath(__file__))
COURSE_ID = "ai-safety-roadmap"   # safety_roadmap.cohort.layout.COURSE_ID: the id `roadmap cohort init` writes
COURSE_DIR = os.path.abspath(os.environ.get("ROADMAP_HUB_COURSE_DIR", "/srv/nbgrader/ai-safety-roadmap"))
EXCHANGE = os.path.abspath(os.environ.get("ROADMAP_HUB_EXCHANGE", "/srv/nbgrader/exchange"))
# The learner/ and instructor/ folders next to this file, as the *user servers* see them (an image may
# put them elsewhere: then set ROADMAP_HUB_ROLE_CONFIG to their parent folder there).
ROLES_HOME = os.environ.get("ROADMAP_HUB_ROLE_CONFIG", HERE)
ROLE_CONFIG = {role: os.path.join(ROLES_HOME, role) for role in ("learner", "instructor")}


def _names(variable: str) -> list[str]:
    return [name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()]


INSTRUCTORS = _names("ROADMAP_HUB_INSTRUCTORS")
LEARNERS = _names("ROADMAP_HUB_LEARNERS")

# Who is who: a hub group decides which lab a user gets (an admin can move people in the admin panel).
c.JupyterHub.load_groups = {"instructors": {"users": INSTRUCTORS}, "learners": {"users": LEARNERS}}
if LEARNERS:
    c.Authenticator.allowed_users = set(INSTRUCTORS) | set(LEARNERS)

# Everyone lands in JupyterLab, where nbgrader's Assignments tab (and, for instructors, Formgrader) live.
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    "ROADMAP_HUB_EXCHANGE": EXCHANGE,
    "ROADMAP_HUB_COURSE_ID": COURSE_ID,
}


def is_instructor(user) -> bool:
    return any(group.name == "instructors" for group in user.groups)


def role_settings(spawner) -> None:
    """Give each server its role's Jupyter config folder (nbgrader settings, which extensions load)."""
    role = "instructor" if is_instructor(spawner.user) else "learner"
    env = dict(spawner.environment)
    # JUPYTER_CONFIG_PATH is searched before the environment's own config: the role's files win.
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(filter(None, [ROLE_CONFIG[role], env.get("JUPYTER_CONFIG_PATH")]))
    if role == "instructor":
        # the formgrader works only on a course folder inside the server's root folder
        env["ROADMAP_HUB_COURSE_DIR"] = COURSE_DIR
        spawner.notebook_dir = os.path.dirname(COURSE_DIR)
    spawner.environment = env


c.Spawner.pre_spawn_hook = role_settings
