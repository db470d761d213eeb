"""Integrity flags: what the grader sees, outside the kernel, that says a submission cheated.

Two sources, both read from the executed notebook the worker hands back:

- attestations (`checks._integrity`): every real check publishes an HMAC-signed,
  numbered attestation under a secret only this run knows. A test cell that
  passed without a valid fresh one did not run the course's check; one outside a
  test cell means a check was driven from student code (looping over quiz
  letters); an alarm means the in-kernel guard saw tampering.
- a source scan of what the student wrote (lines not in the released notebook,
  comments ignored): touching the checks or the reference solutions, sys.modules,
  builtins, input transformers, gc, ctypes, function internals.

A flag names the exercises it affects: the cell's own for a test cell, the next
test cell for a check run from an answer cell, every later test cell for a scan
hit (code runs top to bottom, so only those could be affected).
"""
from __future__ import annotations

import ast
import hmac
import io
import re
import secrets
import tokenize
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from ..checks._integrity import MIME, sign

# (what to look for, why it is flagged). Names are matched in the code's syntax tree, so comments and
# prose never trigger them; the module names also match inside strings (importlib.import_module("...")).
MODULES = {"safety_roadmap.checks": "uses the course's checks module directly",
           "safety_roadmap.reference": "imports the course's reference solutions",
           "ctypes": "uses ctypes (can rewrite the interpreter's memory)",
           "importlib": "imports modules by name (can swap the checks)",
           "builtins": "touches builtins (can replace import or print)",
           "sys.modules": "reads or changes sys.modules"}
ATTRIBUTES = {"modules": "reads or changes sys.modules",
              "input_transformers_cleanup": "installs an IPython input transformer",
              "input_transformers_post": "installs an IPython input transformer",
              "ast_transformers": "installs an IPython AST transformer",
              "input_transformer_manager": "changes IPython's input transformers",
              "get_objects": "walks the interpreter's objects (gc)",
              "get_referrers": "walks the interpreter's objects (gc)",
              "__closure__": "reads a function's internals", "__globals__": "reads a function's internals",
              "__code__": "rewrites a function's code", "__defaults__": "reads a function's internals",
              "__kwdefaults__": "reads a function's internals", "cell_contents": "reads a function's internals",
              "f_globals": "reads the caller's frame", "f_locals": "reads the caller's frame",
              "f_back": "reads the caller's frame", "settrace": "traces the grader's code",
              "setprofile": "traces the grader's code"}
NAMES = {"__builtins__": "touches builtins (can replace import or print)",
         "__import__": "replaces or calls the import machinery"}


@dataclass
class Flag:
    exercise: str     # grade id it affects ('' when no test cell follows)
    cell: int         # 1-based code/markdown cell number in the executed notebook
    reason: str


def new_secret() -> str:
    return secrets.token_hex(32)


def _src(cell: dict[str, Any]) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else str(s)


def _meta(cell: dict[str, Any]) -> dict[str, Any]:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def is_test(cell: dict[str, Any]) -> bool:
    m = _meta(cell)
    return cell.get("cell_type") == "code" and bool(m.get("grade")) and not m.get("solution")


def passes(cell: dict[str, Any]) -> bool:
    """What nbgrader scores full marks: a test cell with no error output."""
    return not any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def _python(source: str) -> str:
    """Cell source as plain Python (IPython magics and shell escapes turned into calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _module_reason(name: str) -> str:
    for mod, why in MODULES.items():
        if name == mod or name.startswith(mod + "."):
            return f"{why} (`{name}`)"
    return ""


def scan(source: str, course_lines: Iterable[str] = ()) -> list[tuple[int, str]]:
    """(line, reason) for each risky construct on a line the student wrote (not a line of the course)."""
    course = {line.strip() for line in course_lines}
    code = _python(source)
    lines = code.splitlines()
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return _scan_text(code, course)
    found: list[tuple[int, str]] = []

    def add(node: ast.AST, why: str) -> None:
        n = getattr(node, "lineno", 1)
        text = lines[n - 1].strip() if 0 < n <= len(lines) else ""
        if why and text not in course:
            found.append((n, why))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, _module_reason(alias.name))
        elif isinstance(node, ast.ImportFrom) and node.module:
            add(node, _module_reason(node.module))
            for alias in node.names:
                add(node, _module_reason(f"{node.module}.{alias.name}"))
        elif isinstance(node, ast.Attribute):
            if node.attr in ATTRIBUTES and (node.attr != "modules" or _dotted(node.value) == "sys"):
                add(node, f"{ATTRIBUTES[node.attr]} (`.{node.attr}`)")
            else:
                add(node, _module_reason(_dotted(node)))
        elif isinstance(node, ast.Name) and node.id in NAMES:
            add(node, f"{NAMES[node.id]} (`{node.id}`)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("run_line_magic", "run_cell_magic"):   # %time CODE, %%timeit ... CODE
            for arg in node.args[1:]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    for _, why in scan(arg.value, course):
                        add(node, why)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for mod in ("safety_roadmap.checks", "safety_roadmap.reference"):
                if mod in node.value:
                    add(node, f"{MODULES[mod]} (named in a string)")
    first: dict[int, str] = {}
    for n, why in sorted(found):   # one reason per line is enough to look at it
        first.setdefault(n, why)
    return sorted(first.items())


def _scan_text(code: str, course: set[str]) -> list[tuple[int, str]]:
    """Fallback for code that does not parse: the module names on non-comment lines."""
    found = []
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
        stripped = {t.start[0] for t in toks if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)}
    except (tokenize.TokenError, IndentationError, SyntaxError):
        stripped = set(range(1, code.count("\n") + 2))
    for n, line in enumerate(code.splitlines(), 1):
        text = re.sub(r"#.*", "", line).strip()
        if n in stripped and line.strip() not in course:
            for mod in ("safety_roadmap.checks", "safety_roadmap.reference", "ctypes"):
                if mod in text:
                    found.append((n, MODULES[mod]))
    return found


def attestations(cell: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for o in cell.get("outputs", []):
        data = (o.get("data") or {}).get(MIME) if o.get("output_type") in ("display_data", "execute_result") else None
        if isinstance(data, dict):
            out.append(data)
    return out


def verify(nb: dict[str, Any], secret: str, course_lines: Iterable[str] = ()) -> list[Flag]:
    """Every integrity flag for one executed notebook (see the module doc)."""
    key = bytes.fromhex(secret)
    cells = nb.get("cells", [])
    course = {line.strip() for line in course_lines if line.strip()}
    tests = [(i, _meta(c).get("grade_id", "")) for i, c in enumerate(cells, 1) if is_test(c)]

    def next_test(i: int) -> str:
        return next((gid for j, gid in tests if j > i), "")

    flags: list[Flag] = []
    seen: set[int] = set()
    for i, cell in enumerate(cells, 1):
        if cell.get("cell_type") != "code":
            continue
        test = is_test(cell)
        own = _meta(cell).get("grade_id", "") if test else next_test(i)
        good = []
        for a in attestations(cell):
            if a.get("kind") == "alarm":
                flags.append(Flag(own, i, f"the checks saw tampering: {str(a.get('what'))[:200]}"))
                continue
            try:
                n, label, thorough = int(a["n"]), str(a["label"]), bool(a["thorough"])
                valid = hmac.compare_digest(str(a["mac"]), sign(key, n, label, thorough))
            except (KeyError, TypeError, ValueError):
                valid = False
            if not valid or n in seen:
                flags.append(Flag(own, i, "a check's proof of running was forged or replayed"))
                continue
            seen.add(n)
            good.append(a)
        if good and not test:
            flags.append(Flag(own, i, "a check was run from the student's own code, outside its test cell "
                                      "(e.g. trying quiz answers in a loop)"))
        if test and passes(cell):
            if not good:
                flags.append(Flag(own, i, "the test cell passed but the course's check never ran "
                                          "(test cell rewritten, or the checks replaced)"))
            elif "thorough=True" in _src(cell) and not any(a.get("thorough") for a in good):
                flags.append(Flag(own, i, "the test cell passed but its hidden (thorough) check never ran"))
        if not test and not _meta(cell).get("locked"):
            for line, why in scan(_src(cell), course):
                for _, gid in [(j, g) for j, g in tests if j > i] or [(0, "")]:
                    flags.append(Flag(gid, i, f"{why}, line {line}"))
    unique = {(f.exercise, f.cell, f.reason): f for f in flags}
    return list(unique.values())


def course_lines(release_nb: dict[str, Any]) -> set[str]:
    """Every line of the released notebook: code the course itself ships is never flagged."""
    return {line.strip() for c in release_nb.get("cells", []) for line in _src(c).splitlines() if line.strip()}


def describe(flags: list[Flag]) -> list[str]:
    """One line per flagged cell and reason, naming every exercise it zeroes: 'double, add_one: why (cell 4)'."""
    groups: dict[tuple[int, str], list[str]] = {}
    for f in flags:
        exercises = groups.setdefault((f.cell, f.reason), [])
        if f.exercise not in exercises:
            exercises.append(f.exercise)
    return [f"{', '.join(e for e in exs if e) or '(no exercise)'}: {reason} (cell {cell})"
            for (cell, reason), exs in sorted(groups.items())]


def as_dicts(flags: list[Flag]) -> list[dict[str, Any]]:
    return [asdict(f) for f in flags]
