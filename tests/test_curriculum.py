"""curriculum.yaml validates, and malformed curricula fail with errors that say where and what."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from safety_roadmap.curriculum import CurriculumError, check_against_notebooks, load_curriculum, parse_curriculum

from .conftest import ROOT


def base() -> dict[str, Any]:
    return {
        "title": "t",
        "phases": [{
            "id": "p1", "title": "Phase", "summary": "s", "checkpoints": ["q?"],
            "chapters": [
                {"id": "01_a", "title": "A", "hours": 2, "difficulty": 1, "optional": False,
                 "prerequisites": [], "objectives": ["o"], "exercises": [{"id": "ex_a", "points": 1}]},
                {"id": "02_b", "title": "B", "hours": 3.5, "difficulty": 2, "prerequisites": ["01_a"],
                 "objectives": ["o"], "exercises": [{"id": "ex_b", "points": 2}]},
            ],
        }],
    }


def test_the_real_curriculum_validates_and_matches_its_notebooks(curriculum) -> None:
    assert curriculum.chapters, "no chapters"
    assert curriculum.chapters[0].id == "01_linear_algebra"
    check_against_notebooks(curriculum, ROOT / "solutions")


def test_a_valid_curriculum_parses() -> None:
    cur = parse_curriculum(base())
    assert [c.id for c in cur.chapters] == ["01_a", "02_b"]
    assert cur.chapter("02_b").max_points == 2
    assert cur.phase_of("02_b").id == "p1"


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base())
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


DELETE = object()
CH = ["phases", 0, "chapters"]


@pytest.mark.parametrize("path,value,expected", [
    (CH + [1, "hours"], -1, r"phases\[0\]\.chapters\[1\]\.hours: expected a number > 0, got -1"),
    (CH + [1, "hours"], "lots", r"phases\[0\]\.chapters\[1\]\.hours: expected a number, got 'lots'"),
    (CH + [0, "difficulty"], 7, r"phases\[0\]\.chapters\[0\]\.difficulty: expected a number <= 5, got 7"),
    (CH + [0, "id"], "intro", r"phases\[0\]\.chapters\[0\]\.id: expected text matching"),
    (CH + [0, "title"], DELETE, r"phases\[0\]\.chapters\[0\]\.title: is required but missing"),
    (CH + [0, "colour"], "red", r"phases\[0\]\.chapters\[0\]\.colour: is not a known field"),
    (CH + [0, "exercises", 0, "points"], 0, r"exercises\[0\]\.points: expected a number > 0"),
    (CH + [0, "optional"], "maybe", r"chapters\[0\]\.optional: expected true or false"),
    (CH + [0, "objectives"], [], r"chapters\[0\]\.objectives: expected at least 1 item"),
    (["phases"], [], r"phases: expected at least 1 item"),
])
def test_schema_errors_name_the_path_and_the_expectation(path, value, expected) -> None:
    with pytest.raises(CurriculumError, match=expected):
        parse_curriculum(mutate(path, value))


def test_unknown_prerequisite() -> None:
    with pytest.raises(CurriculumError, match=r"chapters\[1\]\.prerequisites\[0\]: unknown chapter id '99_x'"):
        parse_curriculum(mutate(CH + [1, "prerequisites"], ["99_x"]))


def test_prerequisite_cycle() -> None:
    data = mutate(CH + [0, "prerequisites"], ["02_b"])
    with pytest.raises(CurriculumError, match=r"prerequisite cycle: (01_a -> 02_b -> 01_a|02_b -> 01_a -> 02_b)"):
        parse_curriculum(data)


def test_self_prerequisite_is_a_cycle() -> None:
    with pytest.raises(CurriculumError, match="prerequisite cycle: 01_a -> 01_a"):
        parse_curriculum(mutate(CH + [0, "prerequisites"], ["01_a"]))


def test_duplicate_chapter_and_exercise_ids() -> None:
    with pytest.raises(CurriculumError, match="duplicate chapter id '01_a'"):
        parse_curriculum(mutate(CH + [1, "id"], "01_a"))
    with pytest.raises(CurriculumError, match="duplicate exercise id 'ex_a'"):
        parse_curriculum(mutate(CH + [1, "exercises"], [{"id": "ex_a", "points": 1}]))


def test_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CurriculumError, match="file not found"):
        load_curriculum(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\nphases:\n  - id: [unclosed\n")
    with pytest.raises(CurriculumError, match=r"bad\.yaml: not valid YAML at line \d+, column \d+"):
        load_curriculum(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(CurriculumError, match="expected a mapping"):
        load_curriculum(scalar)


def test_errors_are_one_line() -> None:
    data = mutate(CH + [0, "hours"], -1)
    data["phases"][0]["chapters"][1]["difficulty"] = 9
    with pytest.raises(CurriculumError) as info:
        parse_curriculum(data)
    assert "\n" not in str(info.value) and "and 1 more problem" in str(info.value)


def _notebook(tmp_path: Path, chapter: str, cells: dict[str, int]) -> None:
    (tmp_path / "solutions").mkdir(exist_ok=True)
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "source": "", "outputs": [], "execution_count": None, "metadata": {"nbgrader": {
            "grade": True, "grade_id": gid, "points": pts, "locked": True, "solution": False, "schema_version": 3}}}
        for gid, pts in cells.items()]}
    (tmp_path / "solutions" / f"{chapter}.ipynb").write_text(json.dumps(nb))


def test_exercises_must_exist_in_the_notebook_with_the_same_points(tmp_path: Path) -> None:
    cur = parse_curriculum(base())
    _notebook(tmp_path, "01_a", {"ex_a": 1})
    with pytest.raises(CurriculumError, match=r"no source notebook at solutions/02_b\.ipynb"):
        check_against_notebooks(cur, tmp_path / "solutions")
    _notebook(tmp_path, "02_b", {"ex_other": 2})
    with pytest.raises(CurriculumError, match="exercise 'ex_b' has no test cell with that grade_id"):
        check_against_notebooks(cur, tmp_path / "solutions")
    _notebook(tmp_path, "02_b", {"ex_b": 3})
    with pytest.raises(CurriculumError, match="worth 2 point.* in curriculum.yaml but 3 in the notebook"):
        check_against_notebooks(cur, tmp_path / "solutions")
    _notebook(tmp_path, "02_b", {"ex_b": 2})
    check_against_notebooks(cur, tmp_path / "solutions")


def test_the_yaml_file_round_trips_through_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "curriculum.yaml"
    path.write_text(yaml.safe_dump(base()))
    assert load_curriculum(path).chapter("01_a").title == "A"
