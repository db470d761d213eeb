"""Contract tests for chapters 01-05 that the per-exercise mutant tables cannot express.

- "fix X first" appears only when the learner's function calls X and X's own check fails;
- demo cells that use an exercise's function have the commented "stuck?" import line above them.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from safety_roadmap.checks import linear_algebra as la
from safety_roadmap.checks._core import CheckFailure

from .conftest import ROOT


def _notebook_function(source: str, name: str):
    """Define `source` as a notebook would (module `__main__`) and return `name` from it."""
    scope: dict = {"__name__": "__main__", "np": np}
    exec(compile(source, "<notebook cell>", "exec"), scope)
    return scope[name]


GOOD_PROJECT = "def project_onto(x, d):\n    return ((x @ d) / (d @ d))[..., None] * d\n"
BAD_PROJECT = "def project_onto(x, d):\n    return (x @ d)[..., None] * d\n"  # assumes a unit direction
REMOVE = "def remove_direction(x, d):\n    return x - project_onto(x, d)\n"
REMOVE_WRONG = "def remove_direction(x, d):\n    return x + project_onto(x, d)\n"


def test_remove_direction_says_fix_project_onto_first_when_it_fails() -> None:
    fn = _notebook_function(BAD_PROJECT + REMOVE, "remove_direction")
    with pytest.raises(CheckFailure, match="fix `project_onto` first"):
        la.check_remove_direction(fn, thorough=True)


def test_remove_direction_does_not_blame_a_correct_project_onto() -> None:
    fn = _notebook_function(GOOD_PROJECT + REMOVE_WRONG, "remove_direction")
    with pytest.raises(CheckFailure) as info:
        la.check_remove_direction(fn, thorough=True)
    assert "first" not in str(info.value)


def test_remove_direction_with_a_good_project_onto_passes(capsys) -> None:
    la.check_remove_direction(_notebook_function(GOOD_PROJECT + REMOVE, "remove_direction"), thorough=True)
    assert "✓" in capsys.readouterr().out


MY_CHAPTERS = ["01_linear_algebra", "02_calculus_optimization", "03_probability_statistics",
               "04_mlp_from_scratch", "05_autodiff_engine"]


@pytest.mark.parametrize("chapter_id", MY_CHAPTERS)
def test_demo_cells_offer_the_course_version_above_first_use(chapter_id: str) -> None:
    """Each exercise function that a later demo cell uses has the commented import right above that use."""
    import importlib
    slug = chapter_id.split("_", 1)[1]
    reference = importlib.import_module(f"safety_roadmap.reference.{slug}")
    cells = json.loads((ROOT / "solutions" / f"{chapter_id}.ipynb").read_text())["cells"]
    missing = []
    for i, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] != "code" or not meta.get("solution") or meta.get("grade"):
            continue
        for name in re.findall(r"^(?:def|class)\s+(\w+)", "".join(cell["source"]), re.M):
            if not hasattr(reference, name):
                continue
            for later in cells[i + 1:]:
                m = later.get("metadata", {}).get("nbgrader", {})
                text = "".join(later["source"])
                if later["cell_type"] != "code" or m.get("solution") or m.get("grade"):
                    continue
                code = "\n".join(line.split("#")[0] for line in text.splitlines())
                if re.search(rf"(?<![\w.]){name}\b", code):
                    line = f"# from safety_roadmap.reference.{slug} import {name}  # stuck?"
                    if line not in text:
                        missing.append(name)
                    break
    assert not missing, f"{chapter_id}: no 'stuck?' import line above the first demo use of {missing}"


MLP_SOURCE = '''
def linear_forward(x, W, b):
    return x @ W + b

def linear_backward(grad_out, x, W):
    return grad_out @ W.T, x.T @ grad_out, grad_out.sum(axis=0)

def relu_forward(x):
    return np.maximum(x, 0.0)

def relu_backward(grad_out, x):
    return grad_out * (x > 0)
RELU_BACKWARD_BUG
def softmax_cross_entropy(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    g = np.exp(logp)
    g[np.arange(n), labels] -= 1
    return float(-logp[np.arange(n), labels].mean()), g / n

class MLP:
    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.params[f"W{i}"] = rng.standard_normal((a, b)) * np.sqrt(2 / a)
            self.params[f"b{i}"] = np.zeros(b)
        self.n = len(sizes) - 1

    def forward(self, x):
        h = x
        for i in range(self.n):
            z = linear_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
            h = relu_forward(z) if i < self.n - 1 else z
        return h

    def loss_and_grads(self, x, y):
        cache, h = [], x
        for i in range(self.n):
            z = linear_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
            cache.append((h, z))
            h = relu_forward(z) if i < self.n - 1 else z
        loss, grad = softmax_cross_entropy(h, y)
        grads = {}
        for i in reversed(range(self.n)):
            h_i, z_i = cache[i]
            if i < self.n - 1:
                grad = relu_backward(grad, z_i)
            grad, grads[f"W{i}"], grads[f"b{i}"] = linear_backward(grad, h_i, self.params[f"W{i}"])
        return loss, grads
'''


def test_mlp_names_the_broken_layer_function_first() -> None:
    from safety_roadmap.checks import mlp_from_scratch as mlp
    bug = "\ndef relu_backward(grad_out, x):\n    return grad_out * (x >= -0.5)\n"  # a wrong mask
    cls = _notebook_function(MLP_SOURCE.replace("RELU_BACKWARD_BUG", bug), "MLP")
    with pytest.raises(CheckFailure) as info:
        mlp.check_mlp_class(cls, thorough=True)
    assert "fix `relu_backward` first" in str(info.value)
    assert "linear_backward` first" not in str(info.value)


def test_mlp_with_correct_layers_passes(capsys) -> None:
    from safety_roadmap.checks import mlp_from_scratch as mlp
    mlp.check_mlp_class(_notebook_function(MLP_SOURCE.replace("RELU_BACKWARD_BUG", ""), "MLP"), thorough=True)
    assert "✓" in capsys.readouterr().out
