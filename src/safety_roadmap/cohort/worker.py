"""The worker side of `roadmap cohort grade`: autograde one submission in a private scratch course.

Each worker is a separate process with its own kernel per submission. It never
opens the course's gradebook: it autogrades a copy of the submission against a
copy of the gradebook that holds the assignments but no students, then hands the
executed notebook back to the parent, which alone writes the real gradebook.

Student code runs in the kernel with
- a per-cell time limit (nbgrader's `Execute.timeout`), and a probe after a
  timeout: a kernel still stuck after the interrupt is not fed the rest of the
  notebook (its remaining test cells are marked "not run");
- a cap on its address space (RLIMIT_AS, set just before the kernel starts), so a
  memory bomb ends in a MemoryError or a dead kernel instead of a swapping machine;
- crash tolerance: if the kernel dies, the cells already run keep their results and
  the rest are marked "not run", instead of nbgrader discarding the whole submission;
- no gradebook in reach: the scratch copy is deleted before the first cell runs.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from nbgrader.preprocessors import (CheckCellMetadata, Execute, IgnorePattern, LimitOutput,
                                    NbGraderPreprocessor)
from nbgrader.utils import is_grade
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbformat.notebooknode import NotebookNode
from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Integer, Unicode

from . import layout

# Runs as `python -c` in front of the kernel command: cap the address space, then exec the kernel.
_LIMIT_AND_EXEC = """\
import os, sys
try:
    import resource
    limit = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
except Exception as exc:
    sys.stderr.write("roadmap: could not limit the kernel's memory: %s\\n" % exc)
os.environ.setdefault("MALLOC_ARENA_MAX", "2")
os.execv(sys.argv[2], sys.argv[2:])
"""

NOT_RUN = "CellNotRun"
STUCK = "not run: an earlier cell ran past the time limit and the kernel was still busy after being interrupted"


SECRET_FILE = "attest.key"
ARM_LINE = ("import safety_roadmap.checks._integrity as __roadmap_integrity; "
            "__roadmap_integrity.arm({path!r}, {chapter!r}); del __roadmap_integrity")


class LimitedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start with their address space capped at `memory_limit` bytes,
    armed for tamper detection (`secret`), and, with `sandbox`, inside a bubblewrap sandbox."""

    memory_limit = Integer(0, help="RLIMIT_AS for the kernel process in bytes (0: no limit)").tag(config=True)
    secret = Unicode("", help="hex key the kernel's checks sign their attestations with ('' = unarmed)").tag(config=True)
    chapter = Unicode("", help="the checks module to import and watch before student code runs").tag(config=True)
    sandbox = Bool(False, help="start the kernel inside a bubblewrap sandbox").tag(config=True)
    shared_dir = Unicode("", help="host folder for the connection file, IPC sockets and the key").tag(config=True)
    box_dir = Unicode("", help="host folder shown to the sandbox as its one writable folder").tag(config=True)
    copy_from = Unicode("", help="folder whose files (notebooks excepted) are copied into box_dir").tag(config=True)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if self.secret and self.shared_dir:
            key = Path(self.shared_dir) / SECRET_FILE
            _write_fresh(key, bytes.fromhex(self.secret))
            cmd.append("--IPKernelApp.exec_lines=" + ARM_LINE.format(path=str(key), chapter=self.chapter))
        if self.memory_limit > 0 and os.name == "posix":
            cmd = [sys.executable, "-c", _LIMIT_AND_EXEC, str(int(self.memory_limit)), *cmd]
        if self.sandbox:
            from .. import sandbox

            # signals cannot cross into the sandbox's own session: interrupt with a kernel message instead
            self.kernel_spec.interrupt_mode = "message"
            box = Path(self.box_dir)
            _remove(box)
            _copy_files(Path(self.copy_from), box)
            env = {"NBGRADER_EXECUTION": "autograde"}
            fonts = _matplotlib_font_cache()
            if fonts:   # spare every kernel rebuilding matplotlib's font list (a second of CPU each)
                mpl = Path(self.shared_dir) / "matplotlib"
                _remove(mpl)
                mpl.mkdir()
                for path in fonts:
                    _write_fresh(mpl / path.name, path.read_bytes())
                env["MPLCONFIGDIR"] = str(mpl)
            cmd = sandbox.wrap(cmd, writable=box, shared=Path(self.shared_dir), env=env)
        return cmd


@functools.lru_cache(maxsize=1)
def _matplotlib_font_cache() -> tuple[Path, ...]:
    """The grader's own matplotlib font-list cache files (found without importing matplotlib)."""
    home = os.environ.get("MPLCONFIGDIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "matplotlib")
    return tuple(sorted(Path(home).glob("fontlist-*.json")))


def _remove(path: Path) -> None:
    """Delete a file, link or folder without following links (an earlier kernel of the same submission
    could have left a link in its folder, pointing anywhere on the host)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _write_fresh(path: Path, data: bytes) -> None:
    """Write a new file, never through a link someone else put there."""
    _remove(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _copy_files(src: Path, dest: Path) -> None:
    """Plain files under src (no links, no notebooks: the graded notebook is not the kernel's to read)."""
    dest.mkdir(parents=True)
    if not src.is_dir():
        return
    for path in sorted(src.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.suffix == ".ipynb":
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class SafeExecute(Execute):
    """nbgrader's Execute, grading as far as it can when the kernel dies or stays stuck."""

    stuck_probe = Integer(5, help="seconds to wait for a kernel to answer after a timed-out cell").tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_manager_class", LimitedKernelManager)
        super().__init__(*args, **kwargs)
        self._halted = ""

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> Any:
        self._halted = ""
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> Any:
        if cell.cell_type != "code":
            return cell, self.resources
        if self._halted:
            cell.outputs = [_error(NOT_RUN, self._halted)] if is_grade(cell) else []
            cell.execution_count = None
            return cell, self.resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            cell.outputs.append(_error("DeadKernelError", "the kernel died while running this cell (it called "
                                       "exit(), crashed Python, or ran out of memory)"))
            self._halted = "not run: the kernel died in an earlier cell"
            return cell, self.resources
        except CellTimeoutError:
            # timed out, interrupted, and still not idle: the code ignores interrupts (nbgrader would give up
            # on the whole submission here)
            cell.outputs.append(_error("CellTimeoutError", "the cell ran past the time limit and ignored the "
                                       "interrupt"))
            self._halted = STUCK
            return cell, self.resources
        if any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError" for o in cell.outputs):
            if not self._responds():
                self._halted = STUCK
        return cell, self.resources

    def _responds(self) -> bool:
        """After a timeout and interrupt: does the kernel answer a kernel_info request in time?"""
        saved = self.timeout
        try:
            self.timeout = max(1, min(int(self.stuck_probe), int(saved or self.stuck_probe)))
            return self.wait_for_reply(self.kc.kernel_info()) is not None
        except Exception:
            return False
        finally:
            self.timeout = saved


class DropGradebook(NbGraderPreprocessor):
    """Delete the scratch gradebook before student code runs: nothing in it is the student's business."""

    path = Unicode("", help="the scratch gradebook file to delete").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: Any) -> Any:
        if self.path:
            Path(self.path).unlink(missing_ok=True)
        return nb, resources


def scratch_config(course: Path, db: Path, settings: dict[str, Any], *, single_notebook: bool,
                   kernel: dict[str, str] | None = None) -> Any:
    """Config for autograding in the scratch course: execute and sanitise, but save nothing.
    `kernel`: the LimitedKernelManager settings of this submission (secret, folders, chapter)."""
    cfg = layout.make_config(course, timeout=settings.get("timeout"), db_path=db,
                             file_config=settings.get("file_config"))
    for key, value in (kernel or {}).items():
        setattr(cfg.LimitedKernelManager, key, value)
    if settings.get("sandbox"):
        cfg.LimitedKernelManager.sandbox = True
        cfg.LimitedKernelManager.transport = "ipc"   # the sandbox has no network shared with us
        cfg.LimitedKernelManager.ip = str(Path(kernel["shared_dir"]) / "k") if kernel else "k"
        if kernel:
            cfg.LimitedKernelManager.connection_file = str(Path(kernel["shared_dir"]) / "kernel.json")
    pipeline: list[Any] = [DropGradebook] if single_notebook else []
    pipeline += [SafeExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, CheckCellMetadata]
    cfg.Autograde.autograde_preprocessors = pipeline
    cfg.DropGradebook.path = str(db)
    cfg.LimitedKernelManager.memory_limit = int(settings.get("memory_limit") or 0)
    return cfg


def autograde_submission(task: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Autograde one submission (its files are in `task['files']`); return the executed notebooks' text."""
    student, assignment = task["student"], task["assignment"]
    scratch = Path(tempfile.mkdtemp(prefix="grade-", dir=settings["run_tmp"]))
    try:
        course, private = scratch / "course", scratch / "private"
        private.mkdir(parents=True)
        db = private / layout.GRADEBOOK
        shutil.copyfile(settings["template_db"], db)
        # the source folder's other files (data an assignment reads); never the source notebook itself
        src = Path(settings["course_dir"]) / "source" / assignment
        dest_src = course / "source" / assignment
        dest_src.mkdir(parents=True)
        for path in src.rglob("*"):
            if path.is_file() and path.suffix != ".ipynb":
                target = dest_src / path.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        sub = course / "submitted" / student / assignment
        sub.mkdir(parents=True)
        for rel, data in task["files"].items():
            target = sub / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        out_dir = course / "autograded" / student / assignment
        shared = scratch / "kernel"
        shared.mkdir(mode=0o700)
        kernel = {"secret": task.get("secret", ""), "chapter": chapter_module(assignment),
                  "shared_dir": str(shared), "box_dir": str(scratch / "box"), "copy_from": str(out_dir)}
        cfg = scratch_config(course, db, settings, single_notebook=len(task["notebooks"]) == 1, kernel=kernel)
        result = layout.api(cfg).autograde(assignment, student, force=True, create=True)
        unarmed = task.get("secret") and (shared / SECRET_FILE).exists()
        notebooks = {}
        for name in task["notebooks"]:
            path = out_dir / f"{name}.ipynb"
            if path.exists():
                notebooks[name] = path.read_text(encoding="utf-8")
        out = {"ok": bool(result.get("success")) and bool(notebooks), "notebooks": notebooks,
               "log": _tail(f"{result.get('log') or ''}\n{result.get('error') or ''}")}
        if unarmed and notebooks:   # the kernel never read its key: a broken install, not the student's doing
            out.update(ok=False, error="the grading kernel did not start its tamper checks (is safety_roadmap "
                                       "importable in the kernel?); see the worker log")
        return out
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def chapter_module(assignment: str) -> str:
    """`01_linear_algebra` -> `linear_algebra`, the checks module the kernel arms."""
    return re.sub(r"^\d+_", "", assignment)


def _tail(text: str, n: int = 4000) -> str:
    return text[-n:]


def worker_main(worker_id: int, tasks: Any, results: Any, settings: dict[str, Any]) -> None:
    """Process entry point: grade tasks from `tasks` until a None arrives; answer on `results`."""
    # The kernel inherits these descriptors: keep its chatter (and ours) out of the instructor's terminal.
    log = open(Path(settings["run_tmp"]) / f"worker-{worker_id}.log", "ab", buffering=0)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    settings = dict(settings, file_config=layout.load_file_config(Path(settings["course_dir"])))
    _become_subreaper()
    results.put((worker_id, None, {"ready": True}))
    while True:
        task = tasks.get()
        if task is None:
            return
        start = time.monotonic()
        try:
            out = autograde_submission(task, settings)
        except BaseException as exc:  # noqa: BLE001 - whatever happens, the parent must hear about it
            out = {"ok": False, "notebooks": {}, "log": traceback.format_exc()[-4000:],
                   "error": f"{type(exc).__name__}: {exc}"}
            if isinstance(exc, KeyboardInterrupt):
                return
        finally:
            _kill_leftovers()
        out["seconds"] = time.monotonic() - start
        results.put((worker_id, task["key"], out))


def _become_subreaper() -> None:
    """Linux: processes a submission starts and orphans get this worker as their parent, not init,
    so `_kill_leftovers` can find them (a student's background process must not outlive its grading)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            pass


def _kill_leftovers() -> None:
    """Kill whatever the last submission left running (its kernel is normally gone already)."""
    import psutil

    from .executor import kill_all

    kill_all(psutil.Process().children(recursive=True), timeout=5)
