"""The check contract for chapters 06-09, beyond "every mutant fails the hidden check".

- Visible checks try every input class a prompt promises (issue 13, item 3): a mutant that only
  breaks on such a class (another device, a non-default eps, a generator of parameters...) already
  fails the *quick* check, so a learner never passes every visible check and then loses the points.
- "Fix X first" appears only when X's own check fails, and a likely cause only when the learner's
  output is that mistake (issue 12, class 6).
"""
from __future__ import annotations

import importlib
from typing import Any

import pytest

from safety_roadmap.checks._core import CheckFailure

# (checks module, exercise, mutant, a phrase the quick check's message must contain)
QUICK_CATCHES = [
    ("pytorch_fundamentals", "input_gradient", "grad_backward_then_clean", "already held"),
    ("pytorch_fundamentals", "input_gradient", "grad_sets_eval", "eval mode"),
    ("pytorch_fundamentals", "torch_train_epoch", "train_moves_inputs_only", "to(device)"),
    ("pytorch_fundamentals", "torch_evaluate", "eval_forgets_device", "to(device)"),
    ("pytorch_fundamentals", "load_checkpoint", "load_parameters_only", "running_mean"),
    ("pytorch_fundamentals", "torch_grads_as_numpy", "grads_share_memory", "shares memory"),
    ("pytorch_fundamentals", "digits_rnn", "RNNHiddenOnCPU", "device=x.device"),
    ("pytorch_fundamentals", "digits_rnn", "RNNHiddenFloat32", "dtype=x.dtype"),
    ("training_dynamics", "sgd_momentum_step", "sgd_velocity_on_cpu", "zeros_like"),
    ("training_dynamics", "adam_step", "adam_moments_on_cpu", "zeros_like"),
    ("training_dynamics", "dropout_forward", "dropout_mask_on_cpu", "rand_like"),
    ("training_dynamics", "dead_relu_fractions", "dead_sets_eval", "mode"),
    ("training_dynamics", "clip_grad_norm", "clip_generator_twice", "generator"),
    ("transformer_from_scratch", "causal_attention_pattern", "pattern_mask_on_cpu", "device=q.device"),
    ("transformer_from_scratch", "causal_attention_pattern", "pattern_reversed_mask", "reversed"),
    ("transformer_from_scratch", "multi_head_attention", "MHAMaskOnCPU", "device"),
    ("transformer_from_scratch", "multi_head_attention", "MHAReshapeNoTranspose", "no transpose"),
    ("transformer_from_scratch", "gpt_layer_norm", "LNEpsOutside", "eps"),
    ("transformer_from_scratch", "gpt_layer_norm", "LNIgnoresEps", "eps"),
    ("transformer_from_scratch", "gpt_model", "GPTPlainListBlocks", "nn.ModuleList"),
    ("train_mini_gpt", "next_token_loss", "loss_detached_leaf", "cut off from the graph"),
    ("train_mini_gpt", "next_token_batch", "batch_rounded_float", "1/6"),
    ("train_mini_gpt", "next_token_batch", "batch_reseeds_global", "never drawn from"),
    ("train_mini_gpt", "sample_next_token", "sample_topk_unguarded", "larger than the vocabulary"),
    ("train_mini_gpt", "sample_next_token", "sample_reseeds_global", "never drawn from"),
]


def _check(module: str, exercise: str) -> Any:
    return getattr(importlib.import_module(f"safety_roadmap.checks.{module}"), f"check_{exercise}")


def _mutant(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"tests.mutants.{module}"), name)


@pytest.mark.parametrize("module,exercise,mutant,phrase", QUICK_CATCHES, ids=[q[2] for q in QUICK_CATCHES])
def test_the_visible_check_already_catches_each_promised_input_class(module: str, exercise: str, mutant: str,
                                                                     phrase: str) -> None:
    with pytest.raises(CheckFailure) as info:
        _check(module, exercise)(_mutant(module, mutant))
    assert phrase in str(info.value), str(info.value)


def test_a_likely_cause_is_not_named_for_a_different_mistake() -> None:
    """Keeping k + 1 tokens is not "you multiplied by the temperature" (which, at temperature 1, is right)."""
    with pytest.raises(CheckFailure) as info:
        _check("train_mini_gpt", "sample_next_token")(_mutant("train_mini_gpt", "sample_top_k_plus_one"), thorough=True)
    assert "temperature" not in str(info.value).split("Likely cause")[-1] or "Likely cause" not in str(info.value)


def test_the_untrained_model_is_not_said_to_predict_its_input() -> None:
    with pytest.raises(CheckFailure) as info:
        _check("train_mini_gpt", "trained_gpt_val_loss")(_mutant("train_mini_gpt", "MUTANTS")["trained_gpt_val_loss"][0])
    assert "predicts its input" not in str(info.value)


# ----------------------------------------------------------------- "fix X first", only when X fails

_NOTEBOOK = '''
import math, torch
from safety_roadmap.reference import transformer_from_scratch as ref, training_dynamics as td

def causal_attention_pattern(q, k):
    return ref.causal_attention_pattern(q, k) {pattern_bug}

class MultiHeadAttention(ref.MultiHeadAttention):
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (lin(x).reshape(b, self.n_heads, t, self.d_head) for lin in (self.q, self.k, self.v))
        pattern = self.hook_pattern(causal_attention_pattern(q, k))
        return self.o((pattern @ v).reshape(b, t, d))

def adam_step(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    td.adam_step(p, grad, state, lr=lr, betas=betas, eps=eps {adam_bug})

def adamw_step(p, grad, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    with torch.no_grad():
        p.mul_(1 - weight_decay)          # wrong either way: the decay is not scaled by lr
    adam_step(p, grad, state, lr=lr, betas=betas, eps=eps)
'''


def _notebook(pattern_bug: str = "", adam_bug: str = "") -> dict[str, Any]:
    """Functions defined the way a notebook defines them (module `__main__`)."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(_NOTEBOOK.format(pattern_bug=pattern_bug, adam_bug=adam_bug), "<notebook>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("helper_broken", [False, True])
def test_multi_head_attention_blames_the_pattern_only_when_its_check_fails(helper_broken: bool) -> None:
    nb = _notebook(pattern_bug="* 1.01" if helper_broken else "")
    with pytest.raises(CheckFailure) as info:
        _check("transformer_from_scratch", "multi_head_attention")(nb["MultiHeadAttention"])
    assert ("fix it first" in str(info.value)) == helper_broken, str(info.value)
    assert "no transpose" in str(info.value) or helper_broken


@pytest.mark.parametrize("helper_broken", [False, True])
def test_adamw_blames_adam_step_only_when_its_check_fails(helper_broken: bool) -> None:
    nb = _notebook(adam_bug="* 10" if helper_broken else "")
    with pytest.raises(CheckFailure) as info:
        _check("training_dynamics", "adamw_step")(nb["adamw_step"], thorough=True)
    assert ("`adam_step`, and its own check fails" in str(info.value)) == helper_broken, str(info.value)
