"""An operating-system sandbox (bubblewrap) around a process that runs a student's code.

`roadmap cohort grade` starts every submission's kernel through `wrap()`: the kernel
and everything it starts live in their own mount, PID, network, IPC, UTS and user
namespaces, and see

- read-only: the system (`/usr`, `/etc`, the `/bin` and `/lib` links), the Python
  environment (`sys.prefix`, `sys.base_prefix`) and the folder holding the
  `safety_roadmap` package - nothing else of the host;
- a private `/tmp` (HOME is made there) and their own `/proc` and `/dev`;
- exactly one writable folder, `/submission` (a copy of that submission and the
  assignment's data files, never read back), plus the folder holding the kernel's
  connection file and IPC sockets;
- no network (a fresh network namespace with only loopback), so the kernel talks
  to its grader over IPC sockets in that folder.

When the kernel exits, the sandbox's PID namespace ends and every process the
student started (double-forked or not) dies with it; `--die-with-parent` ends it
if its grader dies. Why these flags and no others: see `FLAGS` and README.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

INSIDE = "/submission"      # the one writable folder, as student code sees it
HOME = "/tmp/home"
# --unshare-all: user, ipc, pid, net, uts and cgroup namespaces (user and cgroup "if possible").
# --die-with-parent: the sandbox ends with the process that started it (the grading worker).
# --new-session: student code cannot reach the instructor's terminal (TIOCSTI); interrupts are
#   therefore sent as kernel messages, not as signals to a process group.
FLAGS = ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
SYSTEM_DIRS = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
# Environment passed in (all else is cleared): locale, thread counts, plotting backend.
ENV_KEEP = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "NUMEXPR_NUM_THREADS", "MPLBACKEND", "PYTHONHASHSEED", "NBGRADER_EXECUTION",
            "PYDEVD_DISABLE_FILE_VALIDATION", "CUDA_VISIBLE_DEVICES")
FIX = ("install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`), or grade unsandboxed with "
       "--no-sandbox if you trust every submission")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def package_dir() -> Path:
    """The folder that holds the `safety_roadmap` package (src/ of a checkout, or site-packages)."""
    return Path(__file__).resolve().parent.parent


def readonly_paths() -> list[Path]:
    """Host folders the sandbox shows read-only, besides the system folders."""
    out: list[Path] = []
    for p in (Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent,
              package_dir()):
        p = p.resolve()
        if not any(p == q or q in p.parents for q in out) and not str(p).startswith(tuple(SYSTEM_DIRS)):
            out = [q for q in out if p not in q.parents] + [p]
    return out


def exposes(path: Path) -> Path | None:
    """The read-only folder through which the sandbox would show `path`, or None."""
    path = Path(path).resolve()
    for p in readonly_paths() + [Path(d) for d in SYSTEM_DIRS]:
        if path == p or p in path.parents:
            return p
    return None


def _system_args() -> list[str]:
    args: list[str] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    return args


def _env(extra: dict[str, str]) -> list[str]:
    visible = readonly_paths()
    path = [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                  if p and any(Path(p).resolve() == v or v in Path(p).resolve().parents for v in visible)]
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    env.update(PATH=":".join(path), HOME=HOME, TMPDIR="/tmp", IPYTHONDIR=f"{HOME}/.ipython",
               MPLCONFIGDIR=f"{HOME}/.matplotlib", XDG_CACHE_HOME=f"{HOME}/.cache",
               JUPYTER_RUNTIME_DIR=f"{HOME}/.runtime", PYTHONDONTWRITEBYTECODE="1")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    env.update(extra)
    return [a for k, v in sorted(env.items()) for a in ("--setenv", k, v)]


def wrap(cmd: list[str], *, writable: Path, shared: Path, env: dict[str, str] | None = None) -> list[str]:
    """`cmd` run inside a fresh sandbox: `writable` appears as /submission (its working directory),
    `shared` (sockets, connection file) at its own path; both are host folders."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise RuntimeError(f"bwrap not found: {FIX}")
    # The private /tmp comes first: bwrap mounts in order, so a tmpfs on /tmp laid after the binds would
    # hide a project or environment that lives under /tmp (a CI checkout, a scratch clone).
    args = [bwrap, *FLAGS, *_system_args(), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", HOME]
    for p in readonly_paths():
        args += ["--ro-bind", str(p), str(p)]
    args += ["--bind", str(writable), INSIDE, "--bind", str(shared), str(shared), "--chdir", INSIDE,
             *_env(env or {}), "--", *cmd]
    return args


@functools.lru_cache(maxsize=None)
def unavailable() -> str:
    """'' when bubblewrap runs here with the flags we need; otherwise one line saying why, with the fix."""
    bwrap = bwrap_path()
    if bwrap is None:
        return f"bubblewrap (`bwrap`) is not installed: {FIX}"
    probe = [bwrap, *FLAGS, *_system_args(), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start a sandbox ({exc}): {FIX}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return (f"bubblewrap cannot create the sandbox here ({why}; unprivileged user namespaces may be "
                f"switched off: `sysctl kernel.unprivileged_userns_clone=1`, or run as root): {FIX}")
    return ""
