"""The bubblewrap sandbox on its own: what a process inside sees and can do, what it costs, and the
refusal when there is no sandbox. Skipped where bwrap cannot run (CI installs it: see .ci/run)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from safety_roadmap import sandbox
from safety_roadmap.cli import main
from safety_roadmap.cohort import grade
from safety_roadmap.errors import RoadmapError

needs_bwrap = pytest.mark.skipif(bool(sandbox.unavailable()), reason=f"no sandbox here: {sandbox.unavailable()}")

PROBE = textwrap.dedent('''
    import json, os, socket, subprocess, sys, time
    out = {"cwd": os.getcwd(), "pid": os.getpid(), "home": os.environ.get("HOME"), "env": sorted(os.environ)}
    open("written.txt", "w").write("mine")
    for path in sys.argv[1:]:
        out[path] = os.path.exists(path)
    for target in ["/usr/probe", sys.prefix + "/probe", "/etc/probe"]:
        try:
            open(target, "w")
            out["wrote " + target] = True
        except OSError:
            out["wrote " + target] = False
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=3).close()
        out["net"] = True
    except OSError:
        out["net"] = False
    subprocess.Popen([sys.executable, "-c", "import os, time\\nif os.fork():\\n    os._exit(0)\\n"
                      "time.sleep(60)  # sandbox-probe-orphan"], start_new_session=True)
    time.sleep(0.5)
    print(json.dumps(out))
''')


@needs_bwrap
def test_the_sandbox_shows_one_writable_folder_and_nothing_of_the_course(tmp_path: Path) -> None:
    import psutil

    course, box, shared = tmp_path / "course", tmp_path / "box", tmp_path / "shared"
    for d in (course, box, shared):
        d.mkdir()
    (course / "gradebook.db").write_text("secret")
    secret_env = dict(os.environ, ROADMAP_TEST_SECRET="instructor-token")
    cmd = sandbox.wrap([sys.executable, "-c", PROBE, str(course / "gradebook.db"), str(course), "/proc/1/cmdline",
                        str(shared)], writable=box, shared=shared)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=secret_env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["cwd"] == sandbox.INSIDE and (box / "written.txt").read_text() == "mine"
    assert out[str(course / "gradebook.db")] is False and out[str(course)] is False
    assert out[str(shared)] is True
    assert not any(v for k, v in out.items() if k.startswith("wrote "))
    assert out["net"] is False
    assert out["pid"] <= 3 and out["home"] == sandbox.HOME
    assert "ROADMAP_TEST_SECRET" not in out["env"]
    time.sleep(0.5)   # the orphan died with the sandbox's PID namespace
    assert not any("sandbox-probe-orphan" in " ".join(p.info["cmdline"] or [])
                   for p in psutil.process_iter(["cmdline"]))


@needs_bwrap
def test_the_sandbox_costs_well_under_a_second(tmp_path: Path) -> None:
    """Start-up cost of the sandbox around one Python process (the kernel), measured, not assumed."""
    (tmp_path / "box").mkdir()
    plain = [sys.executable, "-c", "pass"]
    boxed = sandbox.wrap(plain, writable=tmp_path / "box", shared=tmp_path)

    def best(cmd: list[str]) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            times.append(time.perf_counter() - start)
        return min(times)

    overhead = best(boxed) - best(plain)
    print(f"sandbox overhead per process: {overhead * 1000:.0f} ms (load {os.getloadavg()[0]:.1f})")
    assert overhead < 0.5


def test_grading_refuses_without_a_sandbox_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    from safety_roadmap.cohort.create import init_cohort
    from safety_roadmap.curriculum import load_curriculum

    from . import cohort_fixture as fx

    root = fx.make_course(tmp_path / "course")
    init_cohort(tmp_path / "cohort", load_curriculum(root / "curriculum.yaml"), root, [fx.ALPHA])
    fx.submit(tmp_path / "cohort", "someone", fx.ALPHA, '{"cells": [')   # corrupt: graded without a kernel
    monkeypatch.setattr(sandbox, "unavailable", lambda: f"bubblewrap (`bwrap`) is not installed: {sandbox.FIX}")
    monkeypatch.setenv("SAFETY_ROADMAP_ROOT", str(root))
    rc = main(["cohort", "grade", str(tmp_path / "cohort")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1
    assert "cannot sandbox student code" in err[0] and "apt-get install bubblewrap" in err[0]
    assert "--no-sandbox" in err[0]
    assert not (tmp_path / "cohort" / ".roadmap" / "graded.json").exists()
    # with --no-sandbox it runs, and says so
    rc = main(["cohort", "grade", str(tmp_path / "cohort"), "--no-sandbox"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("WARNING: --no-sandbox") and "graded 1 submission(s)" in out


def test_a_course_folder_the_sandbox_would_show_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    inside = sandbox.package_dir() / "some-cohort"
    assert sandbox.exposes(inside) == sandbox.package_dir()
    assert sandbox.exposes(Path("/tmp/cohort")) is None
    monkeypatch.setattr(sandbox, "unavailable", lambda: "")
    with pytest.raises(RoadmapError, match="which the sandbox shows to student code"):
        grade.require_sandbox(inside)


def test_the_grader_never_writes_through_a_link_a_kernel_left_behind(tmp_path: Path) -> None:
    """An assignment with two notebooks starts two kernels on one folder: a link the first kernel planted
    where the grader writes the second kernel's key must not redirect that write onto a host file."""
    from safety_roadmap.cohort.worker import SECRET_FILE, _remove, _write_fresh

    victim = tmp_path / "instructor-file"
    victim.write_text("precious")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / SECRET_FILE).symlink_to(victim)
    _write_fresh(shared / SECRET_FILE, b"key")
    assert victim.read_text() == "precious" and (shared / SECRET_FILE).read_bytes() == b"key"
    assert not (shared / SECRET_FILE).is_symlink() and (shared / SECRET_FILE).stat().st_mode & 0o077 == 0
    (shared / "matplotlib").symlink_to(tmp_path)
    _remove(shared / "matplotlib")
    assert victim.exists() and not (shared / "matplotlib").exists()
