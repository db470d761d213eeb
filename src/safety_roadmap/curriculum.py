"""Load and validate `curriculum.yaml`, the map of phases, chapters and exercises.

Every error names the file, the path inside it (``phases[0].chapters[2].hours``)
and what was expected, so an author can fix it without reading this module.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import RoadmapError

CHAPTER_ID = r"^[0-9]{2}_[a-z0-9_]+$"
EXERCISE_ID = r"^[a-zA-Z0-9_\-]+$"


class CurriculumError(RoadmapError, ValueError):
    """`curriculum.yaml` (or a chapter it names) is not what the project expects."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exercise(_Strict):
    id: str = Field(pattern=EXERCISE_ID)
    points: int = Field(gt=0)


class Chapter(_Strict):
    id: str = Field(pattern=CHAPTER_ID)
    title: str = Field(min_length=1)
    hours: float = Field(gt=0)
    difficulty: int = Field(ge=1, le=5)
    optional: bool = False
    prerequisites: list[str] = Field(default_factory=list)
    objectives: list[str] = Field(min_length=1)
    exercises: list[Exercise] = Field(default_factory=list)

    @property
    def max_points(self) -> int:
        return sum(e.points for e in self.exercises)


class Phase(_Strict):
    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    checkpoints: list[str] = Field(default_factory=list)
    chapters: list[Chapter] = Field(default_factory=list)

    @field_validator("chapters", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        """`chapters:` followed only by comments (a phase still being written) means no chapters yet."""
        return [] if value is None else value


class Curriculum(_Strict):
    title: str = Field(min_length=1)
    phases: list[Phase] = Field(min_length=1)

    @property
    def chapters(self) -> list[Chapter]:
        return [c for p in self.phases for c in p.chapters]

    def chapter(self, chapter_id: str) -> Chapter:
        for c in self.chapters:
            if c.id == chapter_id:
                return c
        known = ", ".join(c.id for c in self.chapters)
        raise CurriculumError(f"no chapter '{chapter_id}' in the curriculum (known: {known})")

    def phase_of(self, chapter_id: str) -> Phase:
        for p in self.phases:
            if any(c.id == chapter_id for c in p.chapters):
                return p
        raise CurriculumError(f"no chapter '{chapter_id}' in the curriculum")


def _dotted(loc: Iterable[Any]) -> str:
    """('phases', 0, 'chapters', 2, 'hours') -> 'phases[0].chapters[2].hours'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _explain(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    got = err.get("input")
    shown = "nothing" if got is None else repr(got)
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known field (check its spelling)"
    if kind == "string_pattern_mismatch":
        return f"expected text matching {ctx.get('pattern')}, got {shown}"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "?")
        bound = f"{bound:g}" if isinstance(bound, (int, float)) else bound
        return f"expected a number {op} {bound}, got {shown}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        expected = kind.split("_")[0]
        names = {"int": "a whole number", "float": "a number", "bool": "true or false",
                 "string": "text", "list": "a list", "model": "a mapping", "dict": "a mapping"}
        return f"expected {names.get(expected, expected)}, got {shown}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s), got {shown}"
    return f"{err['msg']} (got {shown})"


def parse_curriculum(data: Any, source: str = "curriculum.yaml") -> Curriculum:
    """Validate already-parsed YAML data; raise `CurriculumError` naming the first problems."""
    if not isinstance(data, dict):
        raise CurriculumError(f"{source}: expected a mapping with 'title' and 'phases' at the top level")
    try:
        cur = Curriculum.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise CurriculumError(f"{source}: {_dotted(first['loc'])}: {_explain(first)}{more}") from None
    _check_references(cur, source)
    return cur


def _check_references(cur: Curriculum, source: str) -> None:
    """Duplicate ids, unknown prerequisites and prerequisite cycles."""
    where: dict[str, str] = {}
    seen_phase: set[str] = set()
    seen_exercise: dict[str, str] = {}
    for pi, phase in enumerate(cur.phases):
        if phase.id in seen_phase:
            raise CurriculumError(f"{source}: phases[{pi}].id: duplicate phase id '{phase.id}'")
        seen_phase.add(phase.id)
        for ci, ch in enumerate(phase.chapters):
            loc = f"phases[{pi}].chapters[{ci}]"
            if ch.id in where:
                raise CurriculumError(f"{source}: {loc}.id: duplicate chapter id '{ch.id}' (also at {where[ch.id]})")
            where[ch.id] = loc
            for ei, ex in enumerate(ch.exercises):
                if ex.id in seen_exercise:
                    raise CurriculumError(
                        f"{source}: {loc}.exercises[{ei}].id: duplicate exercise id '{ex.id}' "
                        f"(also in chapter {seen_exercise[ex.id]}); exercise ids are nbgrader grade ids "
                        "and identify a chapter, so they must be unique across the curriculum")
                seen_exercise[ex.id] = ch.id
    for pi, phase in enumerate(cur.phases):
        for ci, ch in enumerate(phase.chapters):
            for ri, req in enumerate(ch.prerequisites):
                if req not in where:
                    raise CurriculumError(
                        f"{source}: phases[{pi}].chapters[{ci}].prerequisites[{ri}]: unknown chapter id '{req}'")
    graph = {c.id: list(c.prerequisites) for c in cur.chapters}
    cycle = _find_cycle(graph)
    if cycle:
        raise CurriculumError(f"{source}: prerequisite cycle: {' -> '.join(cycle)}")


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def load_curriculum(path: Path) -> Curriculum:
    """Read and validate a curriculum file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CurriculumError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CurriculumError(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CurriculumError(f"{path}: not valid YAML{at}: {problem}") from None
    return parse_curriculum(data, source=str(path.name))


def graded_cells(notebook_path: Path) -> dict[str, int]:
    """grade_id -> points of every autograded code cell in a notebook (read as plain JSON)."""
    nb = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    out: dict[str, int] = {}
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if meta.get("grade") and cell.get("cell_type") == "code":
            out[meta["grade_id"]] = meta.get("points", 0)
    return out


def check_against_notebooks(cur: Curriculum, solutions_dir: Path, only: Iterable[str] | None = None) -> None:
    """Every chapter (or those in `only`) has a source notebook whose test cells are exactly its
    exercises, with the same points."""
    problems: list[str] = []
    wanted = set(only) if only is not None else None
    for ch in cur.chapters:
        if wanted is not None and ch.id not in wanted:
            continue
        path = Path(solutions_dir) / f"{ch.id}.ipynb"
        if not path.exists():
            problems.append(f"chapter '{ch.id}': no source notebook at solutions/{ch.id}.ipynb")
            continue
        try:
            cells = graded_cells(path)
        except (ValueError, OSError) as exc:
            problems.append(f"solutions/{ch.id}.ipynb: not a readable notebook ({exc})")
            continue
        listed = {e.id: e.points for e in ch.exercises}
        for ex_id in sorted(set(listed) - set(cells)):
            problems.append(f"chapter '{ch.id}': exercise '{ex_id}' has no test cell with that grade_id in the notebook")
        for ex_id in sorted(set(cells) - set(listed)):
            problems.append(f"chapter '{ch.id}': the notebook's test cell '{ex_id}' is not listed under exercises")
        for ex_id in sorted(set(cells) & set(listed)):
            if cells[ex_id] != listed[ex_id]:
                problems.append(f"chapter '{ch.id}': exercise '{ex_id}' is worth {listed[ex_id]} point(s) in "
                                f"curriculum.yaml but {cells[ex_id]} in the notebook")
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise CurriculumError(problems[0] + more)
