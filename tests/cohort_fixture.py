"""A tiny, self-contained course (two chapters) and a synthetic cohort of students for it.

Used by the progress, hint and cohort tests and by `scripts/bench_cohort.py`, so none of
them depends on the real chapters (which other people are writing). The test cells use
the real checks machinery (`run_check`), so its tamper guard is exercised end to end.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import yaml

from safety_roadmap.authoring import md, new_chapter, solution, test, code, write_chapter

ALPHA, BETA = "01_alpha", "02_beta"
HIDDEN_MARK = "hidden-tests-only-7f3a"   # appears only inside hidden-test regions of the source

CURRICULUM = {
    "title": "A tiny course for tests",
    "phases": [
        {"id": "basics", "title": "Basics", "summary": "Warm-up chapter.",
         "checkpoints": ["Can you double a vector without looking it up?"],
         "chapters": [{"id": ALPHA, "title": "Alpha: doubling", "hours": 1, "difficulty": 1,
                       "objectives": ["double things"],
                       "exercises": [{"id": "double", "points": 2}, {"id": "add_one", "points": 1}]}]},
        {"id": "more", "title": "More", "summary": "Builds on the basics.",
         "checkpoints": ["Can you square and sum?", "Could you explain why?"],
         "chapters": [{"id": BETA, "title": "Beta: squares", "hours": 2, "difficulty": 2,
                       "prerequisites": [ALPHA], "objectives": ["square things"],
                       "exercises": [{"id": "square", "points": 1}, {"id": "total", "points": 2}]}]},
    ],
}

# exercise -> (function name, reference expression in x, hints)
EXERCISES = {
    "double": ("double", "2 * x", ["Multiply by a number.", "Two times `x`: `2 * x`... no, think first!"]),
    "add_one": ("add_one", "x + 1", ["Addition works element-wise on arrays."]),
    "square": ("square", "x * x", ["`x ** 2` or `x * x`."]),
    "total": ("total", "x.sum()", []),
}
CHAPTER_EXERCISES = {ALPHA: ["double", "add_one"], BETA: ["square", "total"]}


def _test_source(ex: str) -> str:
    fn, ref, _ = EXERCISES[ex]
    return (f"from safety_roadmap.checks._core import Case, run_check\n"
            f"run_check({fn!r}, {fn}, lambda x: {ref}, [Case((np.arange(3.0),), 'three numbers')])\n"
            f"### BEGIN HIDDEN TESTS\n"
            f"# {HIDDEN_MARK}\n"
            f"run_check({fn!r}, {fn}, lambda x: {ref}, [Case((np.ones((2, 3)),), 'a 2x3 matrix'), "
            f"Case((np.array([-1.5, 1e6]),), 'negative and large')], thorough=True)\n"
            f"### END HIDDEN TESTS")


def chapter_notebook(chapter: str) -> dict[str, Any]:
    cells = [md(f"# {chapter}\n\nA tiny chapter for tests."), code("import numpy as np")]
    points = {e["id"]: e["points"] for p in CURRICULUM["phases"] for c in p["chapters"] for e in c["exercises"]}
    for i, ex in enumerate(CHAPTER_EXERCISES[chapter], 1):
        fn, ref, hints = EXERCISES[ex]
        blocks = "".join(f"\n<details><summary>Hint {n}</summary>\n\n{h}\n</details>" for n, h in enumerate(hints, 1))
        cells.append(md(f"### Exercise {i} · `{fn}`\n\nWrite `{fn}(x)`.{blocks}"))
        cells.append(solution(f"{ex}_solution", f"def {fn}(x):\n    ### BEGIN SOLUTION\n    return {ref}\n"
                                               f"    ### END SOLUTION"))
        cells.append(test(ex, points[ex], _test_source(ex)))
    return new_chapter(cells)


def make_course(root: Path) -> Path:
    """Write curriculum.yaml and solutions/ for the tiny course under `root`; return root."""
    root = Path(root)
    (root / "solutions").mkdir(parents=True, exist_ok=True)
    (root / "curriculum.yaml").write_text(yaml.safe_dump(CURRICULUM, sort_keys=False), encoding="utf-8")
    for chapter in CHAPTER_EXERCISES:
        write_chapter(chapter_notebook(chapter), root / "solutions" / f"{chapter}.ipynb")
    return root


# --------------------------------------------------------------------------- students

_SOLUTION_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)


def _src(cell: dict[str, Any]) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _gid(cell: dict[str, Any]) -> str | None:
    return ((cell.get("metadata") or {}).get("nbgrader") or {}).get("grade_id")


def solve(nb: dict[str, Any], exercise: str, body: str | None = None) -> dict[str, Any]:
    """Put the reference answer (or `body`) into an exercise's solution cell."""
    fn, ref, _ = EXERCISES[exercise]
    for cell in nb["cells"]:
        if _gid(cell) == f"{exercise}_solution":
            cell["source"] = body if body is not None else f"def {fn}(x):\n    return {ref}"
    return nb


def edit(nb: dict[str, Any], grade_id: str, fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    for cell in nb["cells"]:
        if _gid(cell) == grade_id:
            fn(cell)
    return nb


def release(course_dir: Path, chapter: str) -> dict[str, Any]:
    return json.loads((Path(course_dir) / "release" / chapter / f"{chapter}.ipynb").read_text(encoding="utf-8"))


def submit(course_dir: Path, student: str, chapter: str, nb: dict[str, Any] | str | None,
           name: str | None = None, timestamp: str = "2026-01-15 12:00:00.000000 UTC") -> Path:
    """Place a submission as `nbgrader collect` would (with a timestamp.txt)."""
    folder = Path(course_dir) / "submitted" / student / chapter
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "timestamp.txt").write_text(timestamp, encoding="utf-8")
    if nb is not None:
        text = nb if isinstance(nb, str) else json.dumps(nb, indent=1)
        (folder / f"{name or chapter}.ipynb").write_text(text, encoding="utf-8")
    return folder


# The cohort the issue asks for, per chapter: expected points per exercise.
STUDENTS = ["perfect", "untouched", "partial", "tampered", "looper", "corrupt", "missing"]
WRONG = "def {fn}(x):\n    return x - 1"   # the same wrong answer gives the same first failure line


def make_cohort(course_dir: Path, *, loop: bool = True) -> dict[tuple[str, str], dict[str, float]]:
    """Submit the synthetic cohort for both chapters; return the expected scores."""
    expected: dict[tuple[str, str], dict[str, float]] = {}
    pts = {"double": 2, "add_one": 1, "square": 1, "total": 2}
    for ch in CHAPTER_EXERCISES:
        exs = CHAPTER_EXERCISES[ch]
        first, second = exs
        # perfect: every reference answer
        nb = release(course_dir, ch)
        for ex in exs:   # with the commented "stuck?" line the chapters carry: never flagged
            solve(nb, ex, STUCK_LINE + f"def {EXERCISES[ex][0]}(x):\n    return {EXERCISES[ex][1]}")
        submit(course_dir, "perfect", ch, nb)
        expected[("perfect", ch)] = {ex: pts[ex] for ex in exs}
        # untouched release
        submit(course_dir, "untouched", ch, release(course_dir, ch))
        expected[("untouched", ch)] = {ex: 0 for ex in exs}
        # partial: the second exercise right, the first wrong
        nb = solve(release(course_dir, ch), second)
        solve(nb, first, WRONG.format(fn=EXERCISES[first][0]))
        submit(course_dir, "partial", ch, nb)
        expected[("partial", ch)] = {first: 0, second: pts[second]}
        # tampered: wrong answers, test cells emptied and re-pointed, numpy patched
        nb = release(course_dir, ch)
        solve(nb, first, f"import numpy as np\nnp.allclose = lambda *a, **k: True\n"
                         f"np.array_equal = lambda *a, **k: True\n"
                         f"def {EXERCISES[first][0]}(x):\n    return x")
        edit(nb, first, lambda c: c.update(source="pass"))
        edit(nb, first, lambda c: c["metadata"]["nbgrader"].update(points=100))
        nb["cells"] = [c for c in nb["cells"] if _gid(c) != second]   # test cell deleted
        solve(nb, second, f"def {EXERCISES[second][0]}(x):\n    return None\n" + VANDAL)
        submit(course_dir, "tampered", ch, nb)
        expected[("tampered", ch)] = {first: 0, second: 0}
        # looper: the first right, then an endless loop before the second's test
        nb = solve(release(course_dir, ch), first)
        loop_src = ("while True:\n    pass" if ch == ALPHA else
                    "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n"
                    "        pass")
        solve(nb, second, (loop_src + "\n" if loop else "") +
              f"def {EXERCISES[second][0]}(x):\n    return {EXERCISES[second][1]}")
        submit(course_dir, "looper", ch, nb)
        expected[("looper", ch)] = {first: pts[first], second: 0 if loop else pts[second]}
        # corrupt JSON, and a notebook saved under the wrong name
        submit(course_dir, "corrupt", ch, '{"cells": [{"cell_type": "code", "sour')
        expected[("corrupt", ch)] = {ex: 0 for ex in exs}
        nb = release(course_dir, ch)
        for ex in exs:
            solve(nb, ex)
        submit(course_dir, "missing", ch, nb, name="Untitled")
        expected[("missing", ch)] = {ex: 0 for ex in exs}
    return expected


# Code a malicious student might add: write to any gradebook it can reach, and to other students' work.
VANDAL = '''
import glob, os, sqlite3
for path in glob.glob("**/gradebook.db", recursive=True) + glob.glob("../**/gradebook.db", recursive=True):
    try:
        con = sqlite3.connect(path)
        con.execute("UPDATE grade SET auto_score = 99, manual_score = 99")
        con.execute("DELETE FROM student WHERE id != 'tampered'")
        con.commit()
        con.close()
    except Exception:
        pass
for path in glob.glob("../../**/*.ipynb", recursive=True):
    try:
        open(path, "w").write("vandalised")
    except Exception:
        pass
'''


def make_broken_kernels(course_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    """Two more students, one chapter each: a kernel that dies, and a memory bomb."""
    nb = solve(release(course_dir, ALPHA), "double")
    solve(nb, "add_one", "import os\nos._exit(3)\ndef add_one(x):\n    return x + 1")
    submit(course_dir, "crasher", ALPHA, nb)
    nb = solve(release(course_dir, BETA), "square", WRONG.format(fn="square"))
    # 40 x 800 MB of address space: refused under the memory cap (np.empty never touches the pages,
    # so even without a cap this would not eat the machine's memory)
    solve(nb, "total", "hog = [np.empty(10**8) for _ in range(40)]\ndef total(x):\n    return x.sum()")
    submit(course_dir, "hog", BETA, nb)
    return {("crasher", ALPHA): {"double": 2, "add_one": 0}, ("hog", BETA): {"square": 0, "total": 0}}


def gradebook_state(db: Path) -> dict[str, list[tuple]]:
    """Everything in an nbgrader gradebook that grading decides, row by row (ids left out: they are random)."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            "students": sorted(con.execute("SELECT id, first_name, last_name, email FROM student")),
            "submissions": sorted(con.execute(
                "SELECT st.id, a.name, s.timestamp FROM submitted_assignment s "
                "JOIN student st ON s.student_id = st.id JOIN assignment a ON s.assignment_id = a.id")),
            "grades": sorted(con.execute(
                "SELECT sa.student_id, a.name, n.name, bc.name, g.auto_score, g.manual_score, g.needs_manual_grade "
                "FROM grade g JOIN base_cell bc ON g.cell_id = bc.id "
                "JOIN submitted_notebook sn ON g.notebook_id = sn.id JOIN notebook n ON sn.notebook_id = n.id "
                "JOIN submitted_assignment sa ON sn.assignment_id = sa.id JOIN assignment a ON sa.assignment_id = a.id")),
            "comments": sorted(con.execute(
                "SELECT sa.student_id, bc.name, c.auto_comment, c.manual_comment FROM comment c "
                "JOIN base_cell bc ON c.cell_id = bc.id JOIN submitted_notebook sn ON c.notebook_id = sn.id "
                "JOIN submitted_assignment sa ON sn.assignment_id = sa.id")),
        }
    finally:
        con.close()


def learner_version(root: Path, chapter: str) -> dict[str, Any]:
    """The learner's notebook for a fixture chapter, as `roadmap build` would make it."""
    from safety_roadmap.build import release_text

    return json.loads(release_text(Path(root) / "solutions" / f"{chapter}.ipynb", chapter))


# --------------------------------------------------------------------------- cheaters (issue 19)

ESCAPE_MARK = "roadmap-escape-7c1d"   # in the command line of a process a submission tries to leave behind
WRONG_ADD_ONE = "def add_one(x):\n    return x - 1"

# In-kernel tampering: each would score full marks with nbgrader alone (its test cells pass).
IN_KERNEL = {
    "rebind_check": '''import safety_roadmap.checks._core as core
def fake_check(name, fn, reference, cases, **kwargs):
    print(f"✓ {name}: all checks passed")
core.run_check = fake_check
def double(x):
    return x - 1''',
    "patch_core": '''from safety_roadmap.checks import _core
_core.compare = lambda *a, **k: None
_core.guard = lambda: None
def double(x):
    return x - 1''',
    "fake_module": '''import sys, types
fake = types.ModuleType("safety_roadmap.checks._core")
class Case:
    def __init__(self, *args, **kwargs):
        pass
def run_check(name, *args, **kwargs):
    print(f"✓ {name}: all checks passed")
fake.Case, fake.run_check = Case, run_check
sys.modules["safety_roadmap.checks._core"] = fake
def double(x):
    return x - 1''',
    "import_hook": '''import builtins, types
real_import = builtins.__import__
fake = types.SimpleNamespace(Case=lambda *a, **k: None,
                             run_check=lambda name, *a, **k: print(f"✓ {name}: all checks passed"))
def hooked(name, *args, **kwargs):
    if name.startswith("safety_roadmap.checks"):
        return fake
    return real_import(name, *args, **kwargs)
builtins.__import__ = hooked
def double(x):
    return x - 1''',
    "transformer": '''from IPython import get_ipython
def skip_checks(lines):
    return ["pass\\n"] if any("run_check" in line for line in lines) else lines
get_ipython().input_transformers_post.append(skip_checks)
def double(x):
    return x - 1''',
    # right answers, but with the course's reference solutions imported, and a quiz answer found by trying
    # every letter against the real check from an answer cell
    "reference_quiz": '''from safety_roadmap.reference.linear_algebra import *
from safety_roadmap.checks._core import check_choice, choice_digest
digest = choice_digest("quiz", "c")
for letter in "abcd":
    try:
        check_choice("quiz", letter, digest, "abcd")
        answer = letter
        break
    except AssertionError:
        pass
def double(x):
    return 2 * x''',
}
# In-kernel cheaters whose add_one is right: the flags still zero it (scan hits affect every later test).
RIGHT_ADD_ONE = {"reference_quiz"}


def sandbox_cheats(course_dir: Path) -> dict[str, str]:
    """Submissions that try to write, read or escape outside their own folder (the host paths written in
    literally, as if the student had guessed them). Each prints what it managed; none should manage anything."""
    c = Path(course_dir)
    writes = {"gradebook": c / "gradebook.db", "victim": c / "submitted" / "perfect" / ALPHA / f"{ALPHA}.ipynb",
              "config": c / "nbgrader_config.py", "own": c / "submitted" / "vandal" / ALPHA / f"{ALPHA}.ipynb"}
    reads = [c / "source" / ALPHA / f"{ALPHA}.ipynb", c / "gradebook.db", c / "nbgrader_config.py",
             c / "submitted" / "perfect" / ALPHA / f"{ALPHA}.ipynb", c / ".roadmap" / "graded.json"]
    return {
        "vandal": f'''import sqlite3
for path in [{str(writes["gradebook"])!r}]:
    try:
        con = sqlite3.connect("file:" + path + "?mode=rw", uri=True)
        con.execute("UPDATE grade SET auto_score = 99")
        con.commit()
        print("WROTE", path)
    except Exception as exc:
        print("BLOCKED", type(exc).__name__)
for path, text in [({str(writes["victim"])!r}, "vandalised"), ({str(writes["own"])!r}, "swapped"),
                   ({str(writes["config"])!r}, "\\nc.Execute.timeout = 1\\n")]:
    try:
        with open(path, "a") as fh:
            fh.write(text)
        print("WROTE", path)
    except Exception as exc:
        print("BLOCKED", type(exc).__name__)
def double(x):
    return x - 1''',
        "finder": '''import os
found = []
for top in ["/tmp", "/root", "/home", "/work", "/srv", "/var", "/submission", "/mnt"]:
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in ("site-packages", ".venv", ".pyenv")]
        found += [os.path.join(folder, f) for f in files
                  if f.endswith(".db") or f == "nbgrader_config.py" or f.endswith(".ipynb")]
        found += [os.path.join(folder, d) for d in dirs if d in ("submitted", "source", "autograded")]
print("FOUND", found)
for path in found:
    try:
        with open(path, "a") as fh:
            fh.write("x")
        print("WROTE", path)
    except Exception as exc:
        pass
def double(x):
    return x - 1''',
        "reader": f'''import os, socket
for path in {[str(p) for p in reads]!r}:
    try:
        open(path, "rb").read(10)
        print("READ", path)
    except Exception as exc:
        print("CANNOT READ", type(exc).__name__)
for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
    try:
        print("PROC", pid, open(f"/proc/{{pid}}/cmdline", "rb").read().replace(b"\\0", b" ").decode()[:300])
    except Exception:
        pass
print("ROOT", sorted(os.listdir("/")))
print("TMP", sorted(os.listdir("/tmp")))
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3).close()
    print("NET open")
except OSError as exc:
    print("NET blocked", type(exc).__name__)
def double(x):
    return x - 1''',
        "escaper": f'''import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import os, time\\nif os.fork():\\n    os._exit(0)\\nos.setsid()\\n"
                  "time.sleep(300)  # {ESCAPE_MARK}"], start_new_session=True)
def double(x):
    return x - 1''',
        "killer": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef double(x):\n    return x - 1",
    }


def make_cheaters(course_dir: Path) -> tuple[dict[tuple[str, str], dict[str, float]], set[str]]:
    """Submit every cheater (chapter ALPHA only); return expected scores and the in-kernel cheaters."""
    expected: dict[tuple[str, str], dict[str, float]] = {}
    for student, code in [*IN_KERNEL.items(), *sandbox_cheats(course_dir).items()]:
        nb = solve(release(course_dir, ALPHA), "double", code)
        solve(nb, "add_one", None if student in RIGHT_ADD_ONE else WRONG_ADD_ONE)
        submit(course_dir, student, ALPHA, nb)
        expected[(student, ALPHA)] = {"double": 0, "add_one": 0}
    return expected, set(IN_KERNEL)


STUCK_LINE = ("# from safety_roadmap.reference.linear_algebra import cosine_similarity  "
              "# stuck? uncomment to continue with the course's version\n")
