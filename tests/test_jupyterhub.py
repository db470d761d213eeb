"""The course on a real JupyterHub, end to end: release, fetch, submit, collect, grade, feedback.

The hub runs `deploy/jupyterhub/jupyterhub_config.py` (as an instructor would) on localhost, with a
test-only login (DummyAuthenticator) and spawner (local processes of the test's own user). The
instructor works through the formgrader's API on their own server, learners through nbgrader's
assignment-list endpoints on theirs, all through the hub's proxy with tokens from the hub's API;
grading and the feedback pages are `roadmap cohort grade` and `roadmap cohort report`.
"""
from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest

from safety_roadmap.cohort.feedback import hidden_lines, leaked

from . import cohort_fixture as fx
from . import hub_tools
from .cli_tools import cli


COURSE_ID = "ai-safety-roadmap"
CHAPTER = fx.ALPHA           # the tiny course's chapter 01
INSTRUCTOR, LEARNERS = "teacher", ["ada", "grace"]


def test_without_node_the_hub_test_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = hub_tools.missing_tools()
    assert reason and all(tool in reason for tool in ("node", "npm", "configurable-http-proxy"))
    assert "npm install -g configurable-http-proxy" in reason


def needs_hub_tools() -> None:
    reason = hub_tools.missing_tools()
    if reason:
        pytest.skip(reason)


def disabled_lab_plugins(hub: hub_tools.Hub, name: str) -> set[str]:
    """The JupyterLab plugins switched off in `name`'s lab page (its embedded page config)."""
    page = hub.user("GET", name, "/lab")
    assert page.status_code == 200, page.text[:300]
    found = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page.text, re.S)
    assert found, f"no page config in {name}'s lab page"
    return set(json.loads(found.group(1)).get("disabledExtensions") or [])


def statuses(listing: dict, chapter: str = CHAPTER) -> set[str]:
    """What the assignment list says about a chapter ('released', 'fetched', 'submitted')."""
    assert listing.get("success"), listing
    return {a["status"] for a in listing["value"] if a["assignment_id"] == chapter}


def _assignment(listing: dict, chapter: str = CHAPTER) -> dict:
    assert listing["success"], listing
    found = [a for a in listing["value"] if a["assignment_id"] == chapter]
    assert found, f"{chapter} not in the learner's assignment list: {listing['value']}"
    return found[-1]


@pytest.mark.slow
def test_a_cohort_on_jupyterhub_from_release_to_feedback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    needs_hub_tools()
    started = time.monotonic()

    laps: list[str] = []

    def lap(what: str) -> None:
        laps.append(f"{what} {time.monotonic() - started:.0f} s")

    repo = fx.make_course(tmp_path / "repo")
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(repo))
    srv = tmp_path / "srv"
    course, exchange = srv / COURSE_ID, srv / "exchange"
    exchange.mkdir(parents=True)
    exchange.chmod(0o777)
    rc, out, err = cli(capsys, "cohort", "init", str(course), CHAPTER)
    assert rc == 0, err
    lap("course ready")

    env = {"ROADMAP_HUB_COURSE_DIR": str(course), "ROADMAP_HUB_EXCHANGE": str(exchange),
           "ROADMAP_HUB_INSTRUCTORS": INSTRUCTOR, "ROADMAP_HUB_LEARNERS": ",".join(LEARNERS)}
    with hub_tools.running_hub(tmp_path, env) as hub:
        lap("hub up")
        everyone = [INSTRUCTOR, *LEARNERS]
        for name in everyone:            # username + password through the hub's REST API: a token
            hub.login(name)
        assert hub.api("POST", "/users/mallory/tokens", token=None,
                       json={"auth": {"username": "mallory", "password": "x"}}).status_code == 403, \
            "a user outside ROADMAP_HUB_LEARNERS/INSTRUCTORS got in"
        for name in everyone:
            hub.start_server(name)
        hub.wait_ready(everyone)
        lap("servers ready")

        # Roles: the instructor has the formgrader; learners have neither its API nor its lab plugin.
        assert hub.user_json("GET", INSTRUCTOR, "/formgrader/api/status")["status"] is True
        for name in LEARNERS:
            assert hub.user("GET", name, "/formgrader/api/status").status_code == 404
        lab_only = {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"}
        assert lab_only <= disabled_lab_plugins(hub, LEARNERS[0])
        assert not lab_only & disabled_lab_plugins(hub, INSTRUCTOR)

        # The instructor releases chapter 01 through the formgrader.
        result = hub.user_json("POST", INSTRUCTOR, f"/formgrader/api/assignment/{CHAPTER}/release")
        assert result["success"], result

        # Learners see it in nbgrader's assignment list, fetch it; ada solves `double`; both submit.
        for name in LEARNERS:
            listing = hub.user_json("GET", name, "/assignments", params={"course_id": COURSE_ID})
            assert _assignment(listing)["status"] == "released"
            fetched = hub.user_json("POST", name, "/assignments/fetch",
                                    data={"course_id": COURSE_ID, "assignment_id": CHAPTER})
            assert _assignment(fetched)["status"] == "fetched"
        path = f"/api/contents/{CHAPTER}/{CHAPTER}.ipynb"
        nb = hub.user_json("GET", LEARNERS[0], path)["content"]
        fx.solve(nb, "double")
        r = hub.user("PUT", LEARNERS[0], path, json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code == 200, r.text
        # Validate in the learner's own lab runs the visible tests in a kernel there: the course's checks
        # import (the `double` test passes) and still catch what is unsolved (`add_one`).
        checked = hub.user_json("POST", LEARNERS[0], "/assignments/validate",
                                data={"path": f"{CHAPTER}/{CHAPTER}.ipynb"})
        assert checked["success"], checked
        failed = [cell["source"] for cell in checked["value"].get("failed", [])]
        assert failed and not any("run_check('double'" in src for src in failed), checked["value"]
        assert any("add_one" in src for src in failed), failed
        for name in LEARNERS:
            submitted = hub.user_json("POST", name, "/assignments/submit",
                                      data={"course_id": COURSE_ID, "assignment_id": CHAPTER})
            assert "submitted" in statuses(submitted), submitted

        # The instructor collects; `roadmap cohort grade` grades; the formgrader shows the scores.
        result = hub.user_json("POST", INSTRUCTOR, f"/formgrader/api/assignment/{CHAPTER}/collect")
        assert result["success"], result
        assert sorted(p.name for p in (course / "submitted").iterdir()) == sorted(LEARNERS)
        lap("collected")
        rc, out, err = cli(capsys, "cohort", "grade", str(course))
        assert rc == 0, out + err
        assert "graded 2 submission(s)" in out, out
        lap("graded")
        shown = {s["student"]: s["score"] for s in
                 hub.user_json("GET", INSTRUCTOR, f"/formgrader/api/submissions/{CHAPTER}")}
        assert shown == {"ada": 2.0, "grace": 0.0}, shown
        per_exercise = {(row[0], row[3]): row[4] for row in fx.gradebook_state(course / "gradebook.db")["grades"]}
        assert per_exercise == {("ada", "double"): 2.0, ("ada", "add_one"): 0.0,
                                ("grace", "double"): 0.0, ("grace", "add_one"): 0.0}, per_exercise

        # Feedback pages (hidden tests removed), released through the formgrader, fetched by learners.
        rc, out, err = cli(capsys, "cohort", "report", str(course))
        assert rc == 0, out + err
        with open(course / "reports" / "grades.csv", newline="") as fh:
            grades = {row["student_id"]: float(row["score"]) for row in csv.DictReader(fh)}
        assert grades == {"ada": 2.0, "grace": 0.0}, grades
        lap("reported")
        result = hub.user_json("POST", INSTRUCTOR, f"/formgrader/api/assignment/{CHAPTER}/release_feedback")
        assert result["success"], result
        hidden = hidden_lines(fx.chapter_notebook(CHAPTER)) | {fx.HIDDEN_MARK}
        assert hidden, "the fixture chapter has no hidden tests to look for"
        for name, score in (("ada", "2.0"), ("grace", "0.0")):
            listing = hub.user_json("POST", name, "/assignments/fetch_feedback",
                                    data={"course_id": COURSE_ID, "assignment_id": CHAPTER})
            entry = _assignment(listing)
            fetched = [nb_ for sub in entry.get("submissions", []) for nb_ in sub.get("notebooks", [])
                       if nb_.get("has_local_feedback")]
            assert fetched, f"{name} fetched no feedback: {entry}"
            folder = hub.user_json("GET", name, f"/api/contents/{CHAPTER}/feedback")
            [stamp] = [item["name"] for item in folder["content"]]
            html = hub.user_json("GET", name, f"/api/contents/{CHAPTER}/feedback/{stamp}/{CHAPTER}.html")["content"]
            assert f"Score: {score}" in html, f"{name}'s feedback does not show the score {score}"
            shown_hidden = leaked(html, hidden)   # as a reader sees the page: tags and highlighting removed
            assert not shown_hidden, f"{name}'s feedback shows hidden tests: {shown_hidden}"
    assert not hub_tools.marked_processes(hub.mark)
    lap("hub stopped")
    with capsys.disabled():   # where the time goes (CI budget): shown with -s or on the terminal
        print(f"\n  jupyterhub round trip: {', '.join(laps)}")
