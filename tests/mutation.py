"""Automated mutation testing: does each exercise's thorough check reject small breakages of its reference?

Hand-written mutants (tests/mutants/) prove the checks catch the mistakes their authors
imagined. This module supplies the other half. It parses each exercise's reference
implementation with `ast`, applies one standard mutation at a time (operator and comparison
swaps, constant tweaks, axis/dim changes, dropped keepdims, sum<->mean, max<->min, removed
statements such as a `.zero_grad()`, dropped `.detach()`/`.copy()`, swapped arguments, slice
bounds off by one, ...), compiles the mutant beside the original, and runs the exercise's
thorough check on it. A mutant the check accepts *survived*: either a real gap in the check
(fix the check) or an equivalent mutant (list it in `tests/mutation_allowlist.yaml` with the
reason a reviewer accepted).

Used by `scripts/mutation_score.py` (the full report, `make mutation`) and by
`tests/test_mutation.py` (a fixed sample, in `make test`).
"""
from __future__ import annotations

import ast
import contextlib
import copy
import importlib
import inspect
import io
import json
import random
import re
import signal
import textwrap
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]
ALLOWLIST = ROOT / "tests" / "mutation_allowlist.yaml"
_CHECK_CALL = re.compile(r"check_(\w+)\(\s*([A-Za-z_]\w*)")


# --------------------------------------------------------------------------- what gets mutated

@dataclass(frozen=True)
class Target:
    """One exercise whose reference is a function or class the learner also writes."""
    chapter: str
    exercise: str
    name: str  # the learner's function/class name, as the test cell passes it to the check

    @property
    def slug(self) -> str:
        return self.chapter.split("_", 1)[1]

    @property
    def key(self) -> str:
        return f"{self.chapter}/{self.exercise}"

    def check(self) -> Callable[..., None]:
        return getattr(importlib.import_module(f"safety_roadmap.checks.{self.slug}"), f"check_{self.exercise}")

    def reference_module(self) -> Any:
        return importlib.import_module(f"safety_roadmap.reference.{self.slug}")

    def reference(self) -> Any:
        return getattr(self.reference_module(), self.name, None)


def _test_cell_names(notebook: Path) -> dict[str, str]:
    """grade id -> the name the test cell hands to its check (`check_x(name)`)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("grade") and not meta.get("solution"):
            src = "".join(cell["source"])
            m = _CHECK_CALL.search(src)
            if m:
                out[meta["grade_id"]] = m.group(2)
    return out


def all_targets(chapters: list[str] | None = None, exercises: list[str] | None = None) -> list[Target]:
    """Every exercise (optionally of the chapters whose ids start with one of `chapters`)."""
    from safety_roadmap.curriculum import load_curriculum

    cur = load_curriculum(ROOT / "curriculum.yaml")
    out = []
    for ch in cur.chapters:
        if chapters and not any(ch.id.startswith(p) for p in chapters):
            continue
        names = _test_cell_names(ROOT / "solutions" / f"{ch.id}.ipynb")
        for ex in ch.exercises:
            if exercises and ex.id not in exercises:
                continue
            out.append(Target(ch.id, ex.id, names.get(ex.id, ex.id)))
    return out


def mutable(target: Target) -> bool:
    """True when the exercise has a reference function or class with Python source to mutate."""
    obj = target.reference()
    return (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == target.reference_module().__name__


# --------------------------------------------------------------------------- mutation operators

_BINOP_SWAPS: dict[type, list[type]] = {
    ast.Add: [ast.Sub], ast.Sub: [ast.Add], ast.Mult: [ast.Div], ast.Div: [ast.Mult],
    ast.FloorDiv: [ast.Div], ast.Pow: [ast.Mult], ast.MatMult: [ast.Mult], ast.Mod: [ast.FloorDiv],
}
_CMP_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
}
_METHOD_SWAPS = {
    "sum": "mean", "mean": "sum", "max": "min", "min": "max", "argmax": "argmin", "argmin": "argmax",
    "amax": "amin", "amin": "amax", "maximum": "minimum", "minimum": "maximum", "tril": "triu",
    "triu": "tril", "zeros_like": "ones_like", "ones_like": "zeros_like", "zeros": "ones", "ones": "zeros",
    "softmax": "log_softmax", "log_softmax": "softmax", "var": "std", "std": "var", "floor": "ceil",
    "ceil": "floor", "any": "all", "all": "any", "log": "log1p", "exp": "expm1", "cumsum": "cumprod",
}
_BUILTIN_SWAPS = {"max": "min", "min": "max", "any": "all", "all": "any"}
# swapping the arguments of these changes nothing, so the mutant would only be noise in a report
_SYMMETRIC_CALLS = {"maximum", "minimum", "add", "multiply", "hypot", "logical_and", "logical_or", "isclose",
                    "allclose", "max", "min", "fmax", "fmin", "eq", "ne", "equal", "not_equal"}
# methods whose behaviour no check (nor learner) depends on
_SKIPPED_METHODS = {"__repr__", "__str__", "__format__", "extra_repr", "_repr_html_"}
_DROPPABLE_CALLS = {"detach", "clone", "copy", "contiguous", "float", "double", "sqrt", "abs"}
_AXIS_KEYWORDS = {"axis", "dim"}
_KEEPDIM_KEYWORDS = {"keepdims", "keepdim"}


@dataclass(frozen=True)
class Mutant:
    """One small change to the reference: a stable id (no line numbers) and where it is."""
    id: str
    line: int  # line in the reference file, for a person reading the report
    source: str  # the whole mutated function/class


def _snippet(node: ast.AST, limit: int = 70) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _skipped_subtrees(tree: ast.AST) -> set[int]:
    """ids of nodes no mutation touches: signatures and defaults, annotations, decorators,
    docstrings, f-strings, raise and assert statements (messages, not behaviour)."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in _SKIPPED_METHODS:
            mark(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.args)
            mark(node.returns)
            for d in node.decorator_list:
                mark(d)
        if isinstance(node, ast.ClassDef):
            for d in [*node.decorator_list, *node.bases, *node.keywords]:
                mark(d)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                mark(first)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, (ast.JoinedStr, ast.Raise, ast.Assert)):
            mark(node)
        if isinstance(node, ast.keyword) and node.arg in _AXIS_KEYWORDS:
            mark(node.value)  # the axis operators below change it as a learner would
    return skip


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _edits(node: ast.AST, parent: ast.AST | None) -> Iterator[tuple[str, Callable[[ast.AST], ast.AST | None]]]:
    """(operator name, edit) pairs for one node. An edit gets a copy of the node and returns its
    replacement (None = delete the statement)."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)):
        for new in _BINOP_SWAPS.get(type(node.op), []):
            yield "operator", lambda n, new=new: _with(n, op=new())
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP_SWAPS:
        yield "comparison", lambda n: _with(n, ops=[_CMP_SWAPS[type(n.ops[0])]()])
    if isinstance(node, ast.BoolOp):
        yield "boolean", lambda n: _with(n, op=ast.Or() if isinstance(n.op, ast.And) else ast.And())
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        yield "drop-unary", lambda n: n.operand
    if isinstance(node, ast.Constant) and not isinstance(parent, ast.keyword | ast.Expr):
        v = node.value
        if isinstance(v, bool):
            yield "constant", lambda n: ast.Constant(not n.value)
        elif isinstance(v, int):
            yield "constant", lambda n: ast.Constant(n.value + 1)
            yield "constant", lambda n: ast.Constant(n.value - 1)
        elif isinstance(v, float):
            yield "constant", lambda n: ast.Constant(1.0 if n.value == 0 else 0.0)
            if v not in (0.0, 1.0):
                yield "constant", lambda n: ast.Constant(_tweak(n.value))
    if isinstance(node, ast.keyword) and node.arg in _AXIS_KEYWORDS:
        axis = _int_value(node.value)
        if axis is not None:
            other = {-1: 0, 0: -1, 1: 0}.get(axis, -1)
            yield "axis", lambda n, other=other: ast.keyword(arg=n.arg, value=_int_node(other))
    if isinstance(node, ast.Call) and any(k.arg in _AXIS_KEYWORDS for k in node.keywords):
        yield "drop-axis", lambda n: _with(n, keywords=[k for k in n.keywords if k.arg not in _AXIS_KEYWORDS])
    if isinstance(node, ast.keyword) and node.arg not in _AXIS_KEYWORDS and isinstance(node.value, ast.Constant) \
            and isinstance(node.value.value, (int, float)) and not isinstance(node.value.value, bool):
        v = node.value.value
        new_v = (_tweak(v) if v not in (0, 1) else 1.0 - v) if isinstance(v, float) else v + 1
        yield "constant", lambda n, new_v=new_v: ast.keyword(arg=n.arg, value=ast.Constant(new_v))
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _METHOD_SWAPS:
            yield "method", lambda n: _with(n, func=_with(n.func, attr=_METHOD_SWAPS[n.func.attr]))
        if isinstance(func, ast.Name) and func.id in _BUILTIN_SWAPS:
            yield "method", lambda n: _with(n, func=ast.Name(_BUILTIN_SWAPS[n.func.id], ast.Load()))
        if isinstance(func, ast.Attribute) and func.attr in _DROPPABLE_CALLS and not node.args and not node.keywords:
            yield "drop-call", lambda n: n.func.value
        if isinstance(func, ast.Attribute) and func.attr in {"sqrt", "abs", "exp", "log"} and len(node.args) == 1 \
                and not node.keywords:
            yield "drop-call", lambda n: n.args[0]
        if any(k.arg in _KEEPDIM_KEYWORDS for k in node.keywords):
            yield "drop-keepdims", lambda n: _with(n, keywords=[k for k in n.keywords if k.arg not in _KEEPDIM_KEYWORDS])
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if len(positional) >= 2 and len(positional) == len(node.args) and called not in _SYMMETRIC_CALLS \
                and ast.unparse(node.args[0]) != ast.unparse(node.args[1]):
            yield "swap-args", lambda n: _with(n, args=[n.args[1], n.args[0], *n.args[2:]])
    if isinstance(node, ast.Attribute) and node.attr in {"T", "mT"} and isinstance(node.ctx, ast.Load):
        yield "drop-transpose", lambda n: n.value
    if isinstance(node, ast.Slice):
        if node.lower is not None and not isinstance(node.lower, ast.Constant):
            yield "slice", lambda n: _with(n, lower=ast.BinOp(n.lower, ast.Add(), ast.Constant(1)))
        if node.upper is not None and not isinstance(node.upper, ast.Constant):
            yield "slice", lambda n: _with(n, upper=ast.BinOp(n.upper, ast.Sub(), ast.Constant(1)))
    if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) >= 2:
        yield "swap-returns", lambda n: _with(n, value=_with(n.value, elts=[n.value.elts[1], n.value.elts[0],
                                                                         *n.value.elts[2:]]))
    if isinstance(node, ast.If):
        yield "negate-condition", lambda n: _with(n, test=ast.UnaryOp(ast.Not(), n.test))
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        yield "drop-statement", lambda n: None
    if isinstance(node, ast.AugAssign):
        yield "drop-statement", lambda n: None
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
            and node.targets[0].id in _names_in(node.value):
        yield "drop-statement", lambda n: None  # x = f(x): an update such as the max-shift in softmax


def _int_value(node: ast.AST) -> int | None:
    """The int a node spells (`1`, `-1`), or None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int_value(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def _int_node(v: int) -> ast.AST:
    return ast.UnaryOp(ast.USub(), ast.Constant(-v)) if v < 0 else ast.Constant(v)


def _tweak(v: float) -> float:
    """A realistic wrong value for a float constant: another epsilon for tiny ones, else double."""
    return v * 100 if 0 < abs(v) < 1e-3 else v * 2


def _with(node: ast.AST, **changes: Any) -> ast.AST:
    new = copy.copy(node)
    for k, v in changes.items():
        setattr(new, k, v)
    return new


def _replace(tree: ast.AST, index: int, edit: Callable[[ast.AST], ast.AST | None]) -> ast.AST:
    """A deep copy of `tree` with the index-th node (ast.walk order) replaced by `edit(node)`."""
    tree = copy.deepcopy(tree)
    nodes = list(ast.walk(tree))
    target = nodes[index]
    for parent in nodes:
        for fname, value in ast.iter_fields(parent):
            if value is target:
                new = edit(copy.deepcopy(target))
                setattr(parent, fname, new)
                return tree
            if isinstance(value, list) and any(v is target for v in value):
                pos = next(i for i, v in enumerate(value) if v is target)
                new = edit(copy.deepcopy(target))
                if new is None:
                    value[pos] = ast.Pass()
                else:
                    value[pos] = new
                return tree
    raise LookupError("node not found")


def generate_mutants(target: Target) -> list[Mutant]:
    """Every distinct single-edit mutant of the target's reference, in source order."""
    lines, first_line = inspect.getsourcelines(target.reference())
    return mutants_from_source(textwrap.dedent("".join(lines)), first_line)


def mutants_from_source(source: str, first_line: int = 1) -> list[Mutant]:
    """Every distinct single-edit mutant of one function or class definition's source."""
    tree = ast.parse(source)
    original = ast.unparse(tree)
    skip = _skipped_subtrees(tree)
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    seen = {original}
    counts: dict[str, int] = {}
    out: list[Mutant] = []
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        for op, edit in _edits(node, parents.get(id(node))):
            try:
                mutated = _replace(tree, index, edit)
                ast.fix_missing_locations(mutated)
                text = ast.unparse(mutated)
                compile(text, "<mutant>", "exec")
            except (SyntaxError, LookupError, TypeError, ValueError, AttributeError):
                continue
            if text in seen:
                continue
            seen.add(text)
            before = _snippet(node)
            after_node = _replace_preview(node, edit)
            label = f"{op}: `{before}` -> `{after_node}`"
            statement = _enclosing_statement(node, parents)
            if statement is not None and statement is not node:
                label += f" in `{_snippet(statement, 60)}`"
            counts[label] = counts.get(label, 0) + 1
            if counts[label] > 1:
                label += f" #{counts[label]}"
            line = first_line + getattr(node, "lineno", 1) - 1
            out.append(Mutant(label, line, text))
    return out


def _enclosing_statement(node: ast.AST, parents: dict[int, ast.AST]) -> ast.AST | None:
    """The smallest statement holding `node` (its context in a report), or None."""
    while node is not None and not isinstance(node, ast.stmt):
        node = parents.get(id(node))
    return node


def _replace_preview(node: ast.AST, edit: Callable[[ast.AST], ast.AST | None]) -> str:
    new = edit(copy.deepcopy(node))
    return "(deleted)" if new is None else _snippet(ast.fix_missing_locations(new))


# --------------------------------------------------------------------------- running a mutant

class MutantTimeout(BaseException):
    """A mutant ran past its time limit (an endless loop counts as caught)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def _raise(signum: int, frame: Any) -> None:
        raise MutantTimeout()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def compile_mutant(target: Target, mutant: Mutant) -> Any:
    """The mutated function/class, defined in a copy of the reference module's namespace (the
    real reference, which the check compares against, is untouched)."""
    module = target.reference_module()
    namespace = dict(vars(module))
    exec(compile(mutant.source, f"<mutant of {target.key}>", "exec"), namespace)  # noqa: S102
    return namespace[target.name]


@dataclass
class Outcome:
    mutant: Mutant
    killed: bool
    how: str  # "check failed", "timed out", "crashed the check: ...", "survived"
    seconds: float


def run_mutant(target: Target, mutant: Mutant, *, timeout: float = 10.0) -> Outcome:
    """Run the exercise's thorough check on one mutant."""
    from safety_roadmap.checks._core import CheckFailure, NotAttempted

    check = target.check()
    start = time.perf_counter()
    try:
        impl = compile_mutant(target, mutant)
    except Exception as exc:  # a mutant that cannot even be defined is caught by any learner's first run
        return Outcome(mutant, True, f"broke on definition: {type(exc).__name__}", 0.0)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        try:
            with _time_limit(timeout):
                check(impl, thorough=True)
        except (CheckFailure, NotAttempted):
            how, killed = "check failed", True
        except MutantTimeout:
            how, killed = "timed out", True
        except Exception as exc:  # the check itself crashed on the mutant's output: still a rejection
            how, killed = f"crashed the check: {type(exc).__name__}", True
        else:
            how, killed = "survived", False
    return Outcome(mutant, killed, how, time.perf_counter() - start)


# --------------------------------------------------------------------------- the allow-list and sampling

@dataclass
class Allowlist:
    """Reviewed equivalent mutants: {target key: {mutant id: reason}}."""
    entries: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = ALLOWLIST) -> "Allowlist":
        if not path.exists():
            return cls()
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        entries: dict[str, dict[str, str]] = {}
        for item in data:
            reason = str(item.get("reason", "")).strip()
            if not reason:
                raise ValueError(f"{path.name}: the entry for {item.get('mutant')!r} has no reason")
            entries.setdefault(item["exercise"], {})[item["mutant"]] = reason
        return cls(entries)

    def reason(self, target: Target, mutant: Mutant) -> str | None:
        return self.entries.get(target.key, {}).get(mutant.id)


def sample(mutants: list[Mutant], k: int | None, seed: int, target: Target) -> list[Mutant]:
    """A fixed, per-exercise sample (the same every run for a given seed)."""
    if k is None or k >= len(mutants):
        return list(mutants)
    return random.Random(f"{seed}:{target.key}").sample(mutants, k)


@dataclass
class Score:
    target: Target
    generated: int
    run: int
    killed: int
    allowed: list[tuple[Mutant, str]]
    survivors: list[Outcome]
    seconds: float

    @property
    def percent(self) -> float:
        considered = self.run - len(self.allowed)
        return 100.0 if considered <= 0 else 100.0 * self.killed / considered


def score_target(target: Target, *, k: int | None = None, seed: int = 0, timeout: float = 10.0,
                 allowlist: Allowlist | None = None) -> Score:
    """Generate, (optionally) sample and run the target's mutants; allow-listed survivors don't count."""
    allowlist = allowlist or Allowlist.load()
    start = time.perf_counter()
    mutants = generate_mutants(target)
    chosen = sample(mutants, k, seed, target)
    killed, allowed, survivors = 0, [], []
    for m in chosen:
        outcome = run_mutant(target, m, timeout=timeout)
        if outcome.killed:
            killed += 1
            continue
        reason = allowlist.reason(target, m)
        if reason:
            allowed.append((m, reason))
        else:
            survivors.append(outcome)
    return Score(target, len(mutants), len(chosen), killed, allowed, survivors, time.perf_counter() - start)
