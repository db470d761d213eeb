"""Checks for chapter 08_transformer_from_scratch. Each `check_<exercise>(obj, thorough=False)`.

Module exercises (attention, LayerNorm, MLP, block, GPT) are checked by building
the learner's class, loading the *same* random weights into it and into the
reference, and comparing outputs on generated inputs. Weights are random
(not the identity-like initialisation) so a forgotten scale or bias shows.
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..reference import transformer_from_scratch as ref
from ._core import Case, CheckFailure, Mistake, call, compare, describe, preview, rng_for, run_check, trust
from ._core import guard as _guard
from ._torch import torch_check as _keeps_rng

__all__ = ["check_char_tokenizer", "check_token_position_embed", "check_causal_attention_pattern",
           "check_multi_head_attention", "check_gpt_layer_norm", "check_gpt_mlp", "check_pre_norm_block",
           "check_gpt_model", "check_load_gpt2_weights"]

trust(torch)
trust(torch.nn.functional)


def _tgen(thorough: bool, salt: int) -> torch.Generator:
    """A torch generator seeded from the fixed numpy seed of `rng_for`."""
    return torch.Generator().manual_seed(int(rng_for(thorough, salt).integers(2 ** 31)))


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    return (torch.randn(*shape, generator=gen) * scale).to(dtype)


def _strided(x: torch.Tensor) -> torch.Tensor:
    """The same values as `x`, as a non-contiguous view (what a transpose or a slice gives)."""
    return x.transpose(-1, -2).contiguous().transpose(-1, -2) if x.dim() >= 2 else x[None].expand(2, -1)[0]


class _Problem:
    """A structural problem found while setting up the learner's module (wrong names, no hook call...)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return "problem"


# --------------------------------------------------------------------------- the meta device: a GPU stand-in

_DEVICE_ERRORS = ("is not on the expected device", "Expected all tensors to be on the same device")


@dataclass(frozen=True)
class _Meta:
    """An input on PyTorch's `meta` device (shapes, no values). A tensor a learner creates on the CPU meets it the
    way it would meet a CUDA or MPS tensor, so a forgotten `device=` shows up on a machine without a GPU."""
    shape: tuple
    out_shape: tuple
    dtype: torch.dtype = torch.float32

    def tensor(self) -> torch.Tensor:
        return torch.empty(self.shape, dtype=self.dtype, device="meta")

    def __repr__(self) -> str:
        return f"shape {self.shape} on the meta device"


@dataclass(frozen=True)
class _DeviceOK:
    """What a device case compares: an output of this shape that stayed on the input's device."""
    shape: tuple

    def __repr__(self) -> str:
        return f"an output of shape {self.shape} on the meta device"


def _on_meta(thunk: Callable[[], Any], meta: _Meta, made_inside: str) -> Any:
    """Run a learner's computation on meta inputs: `_DeviceOK`, or a `_Problem` naming the device mistake.

    Only a device *mismatch* fails: an operation the meta device cannot run at all (`.item()`, a kernel it lacks)
    works on a real GPU, so it passes here."""
    try:
        out = thunk()
    except NotImplementedError as exc:
        if "meta" in str(exc).lower():
            return _DeviceOK(meta.out_shape)
        raise
    except Exception as exc:  # noqa: BLE001 - the learner's code: any error is information
        text = str(exc)
        if any(marker in text for marker in _DEVICE_ERRORS):
            return _Problem(f"with its input on another device than the CPU it raised {type(exc).__name__}: "
                            f"{text.splitlines()[0]}\n  Likely cause: {made_inside}")
        return _DeviceOK(meta.out_shape)
    if isinstance(out, tuple) and out:
        out = out[0]
    if not torch.is_tensor(out):
        return _Problem(f"expected a tensor, got {describe(out)}")
    if out.device.type != "meta":
        return _Problem(f"the input was on the meta device but the output is on `{out.device}`. {made_inside}")
    if tuple(out.shape) != tuple(meta.out_shape):
        return _Problem(f"expected an output of shape {tuple(meta.out_shape)}, got {tuple(out.shape)}")
    return _DeviceOK(meta.out_shape)


_MASK_DEVICE = ("a tensor made inside the function (the causal mask from torch.ones/torch.tril, or torch.zeros/"
                "torch.arange) lives on the CPU while q and k live on the GPU. Create it where the inputs are: "
                "torch.ones(t, t, dtype=torch.bool, device=q.device).")


# --------------------------------------------------------------------------- "fix X first", only when X fails

def _passes_quietly(check: Callable[..., Any], obj: Any) -> bool:
    """True when `check(obj, thorough=True)` passes; its ✓ line or failure is not shown."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(obj, thorough=True)
        return True
    except Exception:  # noqa: BLE001 - CheckFailure, NotAttempted, or anything the learner's code raised
        return False


def failing_helper_note(fn: Any, helper_name: str, check: Callable[..., Any], exercise: str) -> str:
    """"Fix `helper` first", only when the learner's function calls their own `helper` (a notebook function) and
    that helper's own thorough check fails; "" otherwise, so a correct helper is never blamed. Shared by the
    chapter 07-09 checks whose exercises reuse an earlier one (adamw_step -> adam_step, generate ->
    sample_next_token)."""
    helper = getattr(fn, "__globals__", {}).get(helper_name)
    if not callable(helper) or getattr(helper, "__module__", "") != "__main__" or \
            helper_name not in getattr(getattr(fn, "__code__", None), "co_names", ()):
        return ""
    if _passes_quietly(check, helper):
        return ""
    return (f"\n  Your function calls your `{helper_name}`, and its own check fails: run "
            f"`check_{exercise}({helper_name}, thorough=True)` and fix it first.")


def _learner_helper(cls: Any, name: str) -> Any:
    """The notebook function `name` that the learner's class calls (a global of its forward), or None."""
    forward = getattr(cls, "forward", None)
    helper = getattr(forward, "__globals__", {}).get(name)
    return helper if callable(helper) and getattr(helper, "__module__", "") == "__main__" else None


# --------------------------------------------------------------------------- random weights for module checks

@dataclass
class _Spec:
    """Config plus random weights for one module case (state dict in the reference's names)."""
    cfg: ref.GPTConfig
    state: dict
    dtype: torch.dtype = torch.float32

    def __repr__(self) -> str:
        c = self.cfg
        return (f"weights for d_model={c.d_model}, n_heads={c.n_heads}, d_mlp={c.d_mlp}, n_layers={c.n_layers}, "
                f"{str(self.dtype).replace('torch.', '')}")

    def __deepcopy__(self, memo: dict) -> "_Spec":
        return self  # read-only by contract; the checks never hand it to learner code


def _random_state(module: nn.Module, gen: torch.Generator) -> dict:
    """Random values for every parameter: LayerNorm scales near 1, everything else ~N(0, 1/fan_in)."""
    out = {}
    for name, p in module.named_parameters():
        if name.endswith(".w") or name == "w":
            out[name] = 1.0 + 0.3 * torch.randn(p.shape, generator=gen)
        elif p.dim() == 1:
            out[name] = 0.3 * torch.randn(p.shape, generator=gen)
        else:
            out[name] = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1])
    return out


def _spec(kind: str, cfg: ref.GPTConfig, gen: torch.Generator, dtype=torch.float32) -> _Spec:
    factory = {"attn": ref.MultiHeadAttention, "mlp": ref.MLP, "block": ref.Block, "gpt": ref.GPT,
               "ln": lambda c: ref.LayerNorm(c.d_model, c.ln_eps)}[kind]
    return _Spec(cfg, _random_state(factory(cfg), gen), dtype)


def _build(factory: Callable[[], nn.Module], spec: _Spec) -> nn.Module:
    with torch.no_grad():
        module = factory()
        module.load_state_dict(spec.state)
    return module.to(spec.dtype)


def _load_learner(module: Any, spec: _Spec, what: str) -> _Problem | None:
    """Copy the case's weights into the learner's module by name; explain a layout that does not fit."""
    if not isinstance(module, nn.Module):
        return _Problem(f"`{what}(...)` should build an nn.Module, got {describe(module)}")
    for prefix, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, nn.Module) for v in value):
                full = f"{prefix}.{attr}" if prefix else attr
                return _Problem(f"`{what}.{full}` is a plain Python {type(value).__name__}: PyTorch cannot see the "
                                f"modules inside it, so their parameters (`{full}.0...`) are missing from "
                                "state_dict() (the checks and GPT-2's weights are loaded by name), from "
                                ".parameters() (an optimizer would train nothing) and from .to(device). Wrap it: "
                                f"self.{attr} = nn.ModuleList([...]).")
    module.to(spec.dtype)
    own = module.state_dict()
    buffers = {n for n, _ in module.named_buffers()}
    absent = [k for k in spec.state if k not in own]
    loaded_ptrs = set()
    with torch.no_grad():
        for name, value in spec.state.items():
            if name in own:
                if tuple(own[name].shape) != tuple(value.shape):
                    return _Problem(f"`{what}` has `{name}` of shape {tuple(own[name].shape)}; expected "
                                    f"{tuple(value.shape)} (keep the shapes given in the exercise)")
                own[name].copy_(value)
                loaded_ptrs.add(own[name].data_ptr())
    extra = [k for k in own if k not in spec.state and k not in buffers and own[k].data_ptr() not in loaded_ptrs]
    if absent:
        return _Problem(f"`{what}` has no parameter named {', '.join(f'`{k}`' for k in absent[:4])}"
                        f"{' ...' if len(absent) > 4 else ''}. Keep the attribute names given in the exercise "
                        "(the checks, and GPT-2's weights later, are loaded by name).")
    if extra:
        hint = ""
        if any(("unembed" in k or "W_U" in k or "lm_head" in k or "head" in k) for k in extra):
            hint = (" The unembedding is *tied* to the token embedding in GPT-2: compute the logits with "
                    "`W_E.T` instead of a separate matrix.")
        return _Problem(f"`{what}` has parameter(s) a GPT-2 layout does not: {', '.join(f'`{k}`' for k in extra)}."
                        + hint)
    return None


def _compare_outputs(rtol: float, atol: float,
                     earlier: Callable[[], str] | None = None) -> Callable[..., str | None]:
    """Compare a module's output (and hook pattern) with the reference's; `earlier()`, called only on a
    failure, may add a line about an earlier exercise the module depends on."""
    def cmp(got: Any, expected: Any, case: Case) -> str | None:
        if isinstance(got, _Problem):
            return got.message
        if isinstance(expected, _DeviceOK):
            return None if got == expected else f"expected {expected!r}, got {describe(got)}"
        spec = case.args[-1]
        tol = (1e-7, 1e-9) if isinstance(spec, _Spec) and spec.dtype == torch.float64 else (rtol, atol)
        if isinstance(expected, tuple):  # (output, pattern seen by hook_pattern)
            problem = compare(got[0], expected[0], rtol=tol[0], atol=tol[1], what="output")
            if problem:
                return problem + (earlier() if earlier else "")
            if got[1] is None:
                return ("the output is right, but `self.hook_pattern` was never called: pass your pattern through "
                        "it (`pattern = self.hook_pattern(pattern)`) so the tour later in this chapter can read it")
            return compare(got[1], expected[1], rtol=tol[0], atol=tol[1],
                           what="the pattern passed through self.hook_pattern")
        problem = compare(got, expected, rtol=tol[0], atol=tol[1])
        return problem + (earlier() if earlier else "") if problem else None
    return cmp


def _piece_problem(module: Any, spec: _Spec, x: torch.Tensor, pieces: list) -> str | None:
    """Compare the learner's sub-modules with the reference's on the same input and weights.

    `pieces`: (attribute, class name, reference factory, exercise number). Returns a "Likely cause" line naming the
    first piece that differs, so a wrong MultiHeadAttention is not reported as a wrong Block.
    """
    tol = (1e-7, 1e-9) if spec.dtype == torch.float64 else (1e-4, 1e-5)
    for attr, cls_name, factory, exercise in pieces:
        sub = module
        for part in attr.split("."):
            sub = getattr(sub, part, None) if not part.isdigit() else (sub[int(part)] if sub is not None else None)
        if not isinstance(sub, nn.Module):
            continue
        prefix = attr + "."
        sub_spec = _Spec(spec.cfg, {k[len(prefix):]: v for k, v in spec.state.items() if k.startswith(prefix)},
                         spec.dtype)
        try:
            want = _build(lambda: factory(spec.cfg), sub_spec)(x)
            with torch.no_grad():
                got = sub(x)
        except Exception:
            continue
        difference = compare(got, want, rtol=tol[0], atol=tol[1])
        if difference:
            check = _PIECE_CHECKS.get(cls_name)
            if check is not None and not _passes_quietly(globals()[check], type(sub)):
                return (f"the output is wrong because a piece it is built from is wrong.\n  Likely cause: your "
                        f"{cls_name} (`{attr}`) gives a different output from the reference on the same input and "
                        f"weights, and its own check fails: run `{check}({type(sub).__name__}, thorough=True)` "
                        f"(exercise {exercise}) and fix what it reports first.")
            return (f"the output is wrong, and so is what your {cls_name} (`{attr}`) computes inside it, on the same "
                    f"input and weights as the reference's:\n  {difference}\n  Look at how `{attr}` is built and "
                    "called here (the arguments given to its constructor, e.g. `cfg.ln_eps`, and what it is fed).")
    return None


_PIECE_CHECKS = {"LayerNorm": "check_gpt_layer_norm", "MultiHeadAttention": "check_multi_head_attention",
                 "MLP": "check_gpt_mlp", "Block": "check_pre_norm_block"}


def _block_pieces(cfg: ref.GPTConfig) -> list:
    return [("ln1", "LayerNorm", lambda c: ref.LayerNorm(c.d_model, c.ln_eps), 5),
            ("attn", "MultiHeadAttention", ref.MultiHeadAttention, 4),
            ("mlp", "MLP", ref.MLP, 6)]


def _diagnose_block(module: Any, x: torch.Tensor, spec: _Spec) -> str | None:
    return _piece_problem(module, spec, x.to(spec.dtype), _block_pieces(spec.cfg))


def _diagnose_gpt(module: Any, tokens: torch.Tensor, spec: _Spec) -> str | None:
    W_E, W_pos = spec.state["W_E"].to(spec.dtype), spec.state["W_pos"].to(spec.dtype)
    embedded = W_E[tokens] + W_pos[:tokens.shape[-1]]
    blocks = getattr(module, "blocks", None)
    if isinstance(blocks, nn.ModuleList) and len(blocks):
        seen: list[torch.Tensor] = []
        handle = blocks[0].register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0].detach().clone()))
        try:
            with torch.no_grad():
                module(tokens)
        except Exception:
            pass
        finally:
            handle.remove()
        if seen and compare(seen[0], embedded, rtol=1e-6, atol=1e-7):
            helper = _learner_helper(type(module), "embed_tokens")
            if helper is not None and not _passes_quietly(check_token_position_embed, helper):
                return ("the output is wrong because a piece it is built from is wrong.\n  Likely cause: the input "
                        "to the first block is not W_E[tokens] + W_pos[:seq], and your embed_tokens check fails: "
                        "run `check_token_position_embed(embed_tokens, thorough=True)` (exercise 2) and fix it first.")
            return ("the output is wrong: the input to the first block is not W_E[tokens] + W_pos[:seq] (call "
                    "embed_tokens(tokens, self.W_E, self.W_pos) at the start of forward).")
    for i in range(len(blocks) if isinstance(blocks, nn.ModuleList) else 0):
        problem = _piece_problem(module, spec, embedded, [(f"blocks.{i}.{a}", n, f, e) for a, n, f, e in
                                                          _block_pieces(spec.cfg)])
        if problem:
            return problem
    return _piece_problem(module, spec, embedded,
                          [("blocks.0", "Block", ref.Block, 7), ("ln_f", "LayerNorm", lambda c: ref.LayerNorm(c.d_model, c.ln_eps), 5)])


def _module_fn(cls: Any, what: str, make: Callable[[Any, ref.GPTConfig], Any], with_hook: bool = False):
    """A function (x, spec) -> output that builds the learner's module, loads the weights and runs it.

    The module it built last is kept in `run.last["module"]`, for a diagnosis when the output is wrong.
    """
    last: dict = {}

    def run(x: torch.Tensor, spec: _Spec) -> Any:
        module = make(cls, spec.cfg)
        if isinstance(x, _Meta):
            if not isinstance(module, nn.Module):
                return _Problem(f"`{what}(...)` should build an nn.Module, got {describe(module)}")
            return _on_meta(lambda: module.to("meta")(x.tensor()), x, _MASK_DEVICE.replace("q.device", "x.device")
                            .replace("while q and k live", "while the model and its input live"))
        last["module"] = module
        problem = _load_learner(module, spec, what)
        if problem:
            return problem
        seen: list[torch.Tensor] = []
        handle = None
        if with_hook:
            hook = getattr(module, "hook_pattern", None)
            if not isinstance(hook, nn.Module):
                return _Problem(f"`{what}` has no `self.hook_pattern`: keep the `nn.Identity()` from the skeleton")
            handle = hook.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
        try:
            out = module(x)
        finally:
            if handle is not None:
                handle.remove()
        if with_hook:
            return out, (seen[-1] if seen else None)
        return out
    run.last = last
    return run


def _diagnosing(cmp: Callable[..., str | None], learner: Any, diagnose: Callable[..., str | None]):
    """Wrap a compare function: when the output is wrong, first look for a wrong piece inside the module."""
    seen: dict[int, str | None] = {}

    def wrapped(got: Any, expected: Any, case: Case) -> str | None:
        problem = cmp(got, expected, case)
        if problem is None or isinstance(got, _Problem) or "module" not in learner.last:
            return problem
        key = id(case)
        if key not in seen:
            seen[key] = diagnose(learner.last["module"], case.args[0], case.args[1])
        return seen[key] or problem
    return wrapped


def _ref_fn(factory: Callable[[ref.GPTConfig], nn.Module], with_hook: bool = False):
    def run(x: torch.Tensor, spec: _Spec) -> Any:
        if isinstance(x, _Meta):
            return _DeviceOK(x.out_shape)
        module = _build(lambda: factory(spec.cfg), spec)
        if not with_hook:
            with torch.no_grad():
                return module(x)
        seen: list[torch.Tensor] = []
        module.hook_pattern.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
        with torch.no_grad():
            out = module(x)
        return out, seen[-1]
    return run


# --------------------------------------------------------------------------- 1. tokenizer

_TOKENIZER_TEXTS_QUICK = ["hello world", "to be or not to be"]
_TOKENIZER_TEXTS_THOROUGH = ["", "aaaa", "ZYX zyx 987 !?", "def f(x):\n    return x * 2\n", "naïve café ☃ 東京",
                             "tabs\tand\nnewlines\r\n", "".join(chr(c) for c in range(126, 31, -1))]


@_keeps_rng
def check_char_tokenizer(cls: Any, thorough: bool = False) -> None:
    """CharTokenizer(text): .vocab_size, .encode(str) -> list[int], .decode(ids) -> str; ids in sorted order."""
    __tracebackhide__ = True
    _guard()
    name = "CharTokenizer"
    if not callable(cls):
        raise CheckFailure(f"expected the class `CharTokenizer`, got {describe(cls)}")
    texts = _TOKENIZER_TEXTS_QUICK + (_TOKENIZER_TEXTS_THOROUGH if thorough else [])
    for i, text in enumerate(texts, 1):
        where = f"case {i} of {len(texts)} (text {text!r})"
        expected = ref.CharTokenizer(text)
        tok = call(cls, name, (text,), None, where)
        size = call(lambda: tok.vocab_size, f"{name}.vocab_size", (), None, where)
        if size != expected.vocab_size:
            raise CheckFailure(f"`{name}.vocab_size` is {size!r} on {where}; expected {expected.vocab_size} "
                               "(one token per *distinct* character)")
        probes = [text, text[::-1]] + ([text[:1]] if text else [])
        for probe in probes:
            got = call(tok.encode, f"{name}.encode", (probe,), None, where)
            try:
                got_ids = [int(t) for t in got]
            except Exception:
                raise CheckFailure(f"`{name}.encode({probe!r})` should return a list of ints, got {describe(got)}"
                                   ) from None
            want = expected.encode(probe)
            if got_ids != want:
                hint = ""
                first_seen = list(dict.fromkeys(text))
                if got_ids == [first_seen.index(c) for c in probe]:
                    hint = ("\n  Likely cause: you numbered characters in order of first appearance; number them in "
                            "sorted order (`sorted(set(text))`) so every tokenizer built from the same characters agrees.")
                elif got_ids == [t + 1 for t in want]:
                    hint = "\n  Likely cause: ids start at 1; they should start at 0 (they index rows of W_E)."
                raise CheckFailure(f"`{name}.encode({probe!r})` on {where}:\n  expected {want[:12]}\n"
                                   f"  got      {got_ids[:12]}{hint}")
            for ids in ([list(want)] + ([torch.tensor(want, dtype=torch.long)] if thorough else [])):
                back = call(tok.decode, f"{name}.decode", (ids,), None, where)
                if not isinstance(back, str):
                    raise CheckFailure(f"`{name}.decode` should return a str, got {describe(back)} on {where} "
                                       "(join the characters: `''.join(...)`)")
                if back != probe:
                    raise CheckFailure(f"`{name}.decode(encode({probe!r}))` gave {back!r} on {where}; decoding must "
                                       f"undo encoding{' (ids given as a tensor)' if not isinstance(ids, list) else ''}")
    print(f"✓ {name}: all {len(texts)} {'thorough' if thorough else 'quick'} checks passed")


# --------------------------------------------------------------------------- 2. embeddings

def _embed_cases(thorough: bool) -> list[Case]:
    g = _tgen(thorough, 11)

    def case(b: int, t: int, vocab: int, n_ctx: int, d: int, label: str, dtype=torch.float32, strided=False):
        tokens = torch.randint(0, vocab, (b, t), generator=g)
        W_E, W_pos = _randn(g, vocab, d, dtype=dtype), _randn(g, n_ctx, d, dtype=dtype)
        if strided:
            W_E, tokens = _strided(W_E), _strided(tokens)
        return Case((tokens, W_E, W_pos), label)

    cases = [case(1, 4, 10, 8, 6, "batch 1, 4 tokens, context 8"), case(3, 5, 20, 16, 8, "batch 3, 5 tokens")]
    if thorough:
        cases += [case(2, 16, 20, 16, 4, "the sequence fills the whole context"),
                  case(4, 1, 7, 9, 3, "one token per sequence"),
                  case(2, 6, 50, 12, 10, "float64 weights", dtype=torch.float64),
                  case(3, 5, 11, 8, 6, "non-contiguous weights and tokens", strided=True),
                  case(5, 7, 3, 10, 2, "a tiny vocabulary (many repeated tokens)")]
    return cases


@_keeps_rng
def check_token_position_embed(fn: Callable[..., Any], thorough: bool = False) -> None:
    """embed_tokens(tokens [b, t], W_E [vocab, d], W_pos [n_ctx, d]) -> [b, t, d]."""
    __tracebackhide__ = True
    _guard()
    run_check("embed_tokens", fn, ref.embed_tokens, _embed_cases(thorough), rtol=1e-6, atol=1e-7,
              thorough=thorough, mistakes=[
                  Mistake("you left out the position embeddings: add W_pos[:seq] (one row per position).",
                          lambda t, E, P: E[t]),
                  Mistake("you looked up W_pos with the token ids; positions are 0, 1, ..., seq-1 whatever the tokens.",
                          lambda t, E, P: E[t] + P[t]),
                  Mistake("positions are off by one: the first token is position 0, so use W_pos[:seq].",
                          lambda t, E, P: E[t] + P[1:t.shape[-1] + 1]),
              ])


# --------------------------------------------------------------------------- 3. attention pattern

def _qk_cases(thorough: bool) -> list[Case]:
    g = _tgen(thorough, 12)

    def case(b, h, t, d, label, scale=1.0, dtype=torch.float32, strided=False):
        if strided:  # [b, t, h, d] transposed to [b, h, t, d]: exactly what splitting heads produces
            q = _randn(g, b, t, h, d, scale=scale, dtype=dtype).transpose(1, 2)
            k = _randn(g, b, t, h, d, scale=scale, dtype=dtype).transpose(1, 2)
        else:
            q, k = _randn(g, b, h, t, d, scale=scale, dtype=dtype), _randn(g, b, h, t, d, scale=scale, dtype=dtype)
        return Case((q, k), label)

    cases = [case(1, 1, 3, 4, "batch 1, 1 head, 3 positions"), case(2, 3, 5, 8, "batch 2, 3 heads, 5 positions"),
             case(2, 2, 4, 6, "float64, non-contiguous q and k", dtype=torch.float64, strided=True),
             Case((_Meta((2, 2, 5, 4), (2, 2, 5, 5)), _Meta((2, 2, 5, 4), (2, 2, 5, 5))),
                  "q and k on another device (PyTorch's `meta` device stands in for a GPU)")]
    if thorough:
        cases += [case(1, 2, 1, 4, "a single position (it can only attend to itself)"),
                  case(2, 2, 6, 9, "d_head = 9 (not a power of two)"),
                  case(1, 2, 7, 16, "large scores (q and k of size ~10): needs a stable softmax", scale=10.0),
                  case(3, 4, 6, 5, "float64 inputs", dtype=torch.float64),
                  case(2, 3, 5, 4, "non-contiguous q and k (heads split by a transpose)", strided=True),
                  case(1, 1, 12, 2, "12 positions, d_head 2", scale=3.0)]
    return cases


def _pattern_variant(q, k, *, scale=None, mask="before", diag=1, dim=-1):
    t, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-1, -2) / (math.sqrt(d) if scale is None else scale)
    future = torch.ones(t, t, dtype=torch.bool).triu(diag)
    if mask == "before":
        return scores.masked_fill(future, float("-inf")).softmax(dim)
    if mask == "after":
        return scores.softmax(dim).masked_fill(future, 0.0)
    if mask == "after_renormalised":
        p = scores.softmax(dim).masked_fill(future, 0.0)
        return p / p.sum(-1, keepdim=True)
    if mask == "big_negative":
        return scores.masked_fill(future, -1e9).softmax(dim)
    if mask == "zero":
        return scores.masked_fill(future, 0.0).softmax(dim)
    if mask == "flipped":
        return scores.masked_fill(future.T, float("-inf")).softmax(dim)
    if mask == "reversed":  # tril instead of triu(1): the past *and* the diagonal masked
        return scores.masked_fill(~future, float("-inf")).softmax(dim)
    return scores.softmax(dim)


def _compare_pattern(got: Any, expected: Any, case: Case) -> str | None:
    if isinstance(got, _Problem):
        return got.message
    if isinstance(expected, _DeviceOK):
        return None if got == expected else f"expected {expected!r}, got {describe(got)}"
    problem = compare(got, expected, rtol=1e-4, atol=1e-6)
    if problem and "nan" in problem.split("\n")[0]:
        problem += f"\n    expected {preview(expected)}"
    return problem


@_keeps_rng
def check_causal_attention_pattern(fn: Callable[..., Any], thorough: bool = False) -> None:
    """causal_attention_pattern(q, k): [b, h, t, d_head] x [b, h, t, d_head] -> [b, h, t, t], on any device."""
    __tracebackhide__ = True
    _guard()
    name = "causal_attention_pattern"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")

    def learner(q: Any, k: Any) -> Any:
        if isinstance(q, _Meta):
            return _on_meta(lambda: fn(q.tensor(), k.tensor()), q, _MASK_DEVICE)
        return fn(q, k)

    def reference(q: Any, k: Any) -> Any:
        return _DeviceOK(q.out_shape) if isinstance(q, _Meta) else ref.causal_attention_pattern(q, k)

    learner.__name__ = getattr(fn, "__name__", name)
    run_check(name, learner, reference, _qk_cases(thorough), compare_fn=_compare_pattern,
              thorough=thorough, mistakes=[
                  Mistake("you masked *after* the softmax: the rows no longer sum to 1. Set future scores to -inf "
                          "before the softmax, so the remaining weights share all of the probability.",
                          lambda q, k: _pattern_variant(q, k, mask="after")),
                  Mistake("you masked after the softmax and renormalised. That is right on paper, but when a *future* "
                          "score is much larger than the allowed ones, the allowed weights underflow to 0 and you "
                          "divide 0 by 0. Mask the scores (with -inf) before the softmax instead.",
                          lambda q, k: _pattern_variant(q, k, mask="after_renormalised")),
                  Mistake("the diagonal is masked too: a position may attend to itself (mask only keys j > i).",
                          lambda q, k: _pattern_variant(q, k, diag=0)),
                  Mistake("the diagonal is masked too: a position may attend to itself (mask only keys j > i).",
                          lambda q, k: _pattern_variant(q, k, diag=0, mask="big_negative")),
                  Mistake("you set future scores to 0, but exp(0) = 1 still gives them weight: use -inf.",
                          lambda q, k: _pattern_variant(q, k, mask="zero")),
                  Mistake("no causal mask: position i may only attend to positions j <= i.",
                          lambda q, k: _pattern_variant(q, k, mask="none")),
                  Mistake("the mask is the wrong triangle: mask keys *after* the query (above the diagonal).",
                          lambda q, k: _pattern_variant(q, k, mask="flipped")),
                  Mistake("the mask is reversed: it hides the past and the diagonal (torch.tril) instead of the "
                          "future (torch.ones(t, t).triu(1)), and the last row, with every score at -inf, becomes "
                          "0/0 = nan.", lambda q, k: _pattern_variant(q, k, mask="reversed")),
                  Mistake("you forgot to divide the scores by sqrt(d_head).",
                          lambda q, k: _pattern_variant(q, k, scale=1.0)),
                  Mistake("you divided by d_head; the scale is sqrt(d_head).",
                          lambda q, k: _pattern_variant(q, k, scale=float(q.shape[-1]))),
                  Mistake("the softmax runs over the query axis; it should normalise over keys (the last axis).",
                          lambda q, k: _pattern_variant(q, k, dim=-2)),
              ])


# --------------------------------------------------------------------------- 4-8. modules

def _cfg(d_model: int, n_heads: int, n_layers: int = 1, vocab: int = 11, n_ctx: int = 12, d_mlp: int = 0,
         ln_eps: float = 1e-5):
    return ref.GPTConfig(vocab_size=vocab, n_ctx=n_ctx, d_model=d_model, n_heads=n_heads, n_layers=n_layers,
                         d_mlp=d_mlp, ln_eps=ln_eps)


def _meta_case(kind: str, cfg: ref.GPTConfig, g: torch.Generator, b: int, t: int) -> Case:
    """The module run on the meta device (a GPU stand-in): a CPU tensor made inside forward fails there."""
    shape = (b, t) if kind == "gpt" else (b, t, cfg.d_model)
    out = (b, t, cfg.vocab_size) if kind == "gpt" else shape
    return Case((_Meta(shape, out, torch.long if kind == "gpt" else torch.float32), _spec(kind, cfg, g)),
                "the model and its input on another device (PyTorch's `meta` device stands in for a GPU)")


def _module_cases(kind: str, thorough: bool, salt: int) -> list[Case]:
    g = _tgen(thorough, salt)

    def case(cfg, b, t, label, dtype=torch.float32, strided=False, offset=0.0):
        spec = _spec(kind, cfg, g, dtype)
        x = _randn(g, b, t, cfg.d_model, dtype=dtype) + offset
        if strided:
            x = _strided(x)
        return Case((x, spec), label)

    cases = [case(_cfg(8, 2), 1, 4, "d_model 8, 2 heads, batch 1, 4 positions"),
             case(_cfg(12, 3), 2, 5, "d_model 12, 3 heads, batch 2, 5 positions"),
             case(_cfg(10, 2, d_mlp=16), 2, 4, "a non-contiguous input (a transposed view)", strided=True)]
    if kind in ("attn", "block"):
        cases.append(_meta_case(kind, _cfg(4, 2, d_mlp=8), g, 1, 3))
    if thorough:
        cases += [case(_cfg(16, 4), 3, 7, "4 heads of size 4 (n_heads == d_head)"),
                  case(_cfg(24, 2), 2, 6, "2 heads of size 12"),
                  case(_cfg(6, 1), 2, 5, "a single head"),
                  case(_cfg(16, 8), 1, 9, "8 heads of size 2"),
                  case(_cfg(8, 2), 2, 1, "a single position"),
                  case(_cfg(12, 3, d_mlp=20), 2, 5, "float64", dtype=torch.float64),
                  case(_cfg(10, 2, d_mlp=24), 2, 6, "a non-contiguous input (a transposed view)", strided=True),
                  case(_cfg(8, 4), 2, 4, "inputs with a large offset (mean 5)", offset=5.0)]
        if kind == "block":
            cases.append(case(_cfg(8, 2, ln_eps=0.5), 2, 5, "a config with ln_eps=0.5 (not the default 1e-5)",
                              offset=0.0))
    return cases


def _split(y, b, t, h, dh):
    return y.reshape(b, t, h, dh).transpose(1, 2)


def _mha_variant(x, spec, *, split="right", proj=True, mask=True, merge="right", scale_by_d_model=False):
    s, cfg = spec.state, spec.cfg
    x = x.to(spec.dtype)
    b, t, d = x.shape
    h, dh = cfg.n_heads, cfg.d_head
    lin = {n: (s[f"{n}.weight"].to(spec.dtype), s[f"{n}.bias"].to(spec.dtype)) for n in "qkvo"}
    proj_ = lambda n, y: F.linear(y, *lin[n])  # noqa: E731
    sp = (lambda y: _split(y, b, t, h, dh)) if split == "right" else (lambda y: y.reshape(b, h, t, dh))
    q, k, v = sp(proj_("q", x)), sp(proj_("k", x)), sp(proj_("v", x))
    pattern = _pattern_variant(q, k, mask="before" if mask else "none",
                               scale=math.sqrt(d) if scale_by_d_model else None)
    z = pattern @ v
    z = z.transpose(1, 2).reshape(b, t, d) if merge == "right" else z.reshape(b, t, d)
    return (proj_("o", z) if proj else z), pattern


@_keeps_rng
def check_multi_head_attention(cls: Any, thorough: bool = False) -> None:
    """MultiHeadAttention(cfg)(x [b, t, d_model]) -> [b, t, d_model]; the pattern goes through self.hook_pattern."""
    __tracebackhide__ = True
    _guard()
    learner = _module_fn(cls, "MultiHeadAttention", lambda c, cfg: c(cfg), with_hook=True)

    def earlier() -> str:
        helper = _learner_helper(cls, "causal_attention_pattern")
        if helper is None or _passes_quietly(check_causal_attention_pattern, helper):
            return ""
        return ("\n  Your forward calls your `causal_attention_pattern`, and its own check fails: run "
                "`check_causal_attention_pattern(causal_attention_pattern, thorough=True)` and fix it first.")

    run_check("MultiHeadAttention", learner, _ref_fn(ref.MultiHeadAttention, with_hook=True),
              _module_cases("attn", thorough, 13), compare_fn=_compare_outputs(1e-4, 1e-5, earlier=earlier),
              thorough=thorough, mistakes=[
                  Mistake("you reshaped straight to [b, n_heads, t, d_head] and straight back, with no transpose "
                          "either way. That cuts the sequence into pieces and mixes different positions into one "
                          "head. Reshape to [b, t, n_heads, d_head], then transpose(1, 2); to merge, transpose back "
                          "before reshaping to [b, t, d_model].",
                          lambda x, s: _mha_variant(x, s, split="wrong", merge="wrong")),
                  Mistake("heads are split along the wrong axis: reshape to [b, t, n_heads, d_head] *first*, then "
                          "transpose to [b, n_heads, t, d_head]. Reshaping straight to [b, n_heads, t, d_head] mixes "
                          "positions into heads.", lambda x, s: _mha_variant(x, s, split="wrong")),
                  Mistake("heads are merged back wrongly: transpose [b, n_heads, t, d_head] to [b, t, n_heads, d_head] "
                          "before reshaping to [b, t, d_model].", lambda x, s: _mha_variant(x, s, merge="wrong")),
                  Mistake("you skipped the output projection `self.o`.", lambda x, s: _mha_variant(x, s, proj=False)),
                  Mistake("the scores are scaled by sqrt(d_model); each head's scale is sqrt(d_head).",
                          lambda x, s: _mha_variant(x, s, scale_by_d_model=True)),
                  Mistake("no causal mask: did you call a softmax directly instead of `causal_attention_pattern`?",
                          lambda x, s: _mha_variant(x, s, mask=False)),
              ])


def _ln_variant(x, spec, *, unbiased=False, eps_outside=False, dim=-1, affine=True, centre=True):
    w, b = spec.state["w"].to(spec.dtype), spec.state["b"].to(spec.dtype)
    eps = spec.cfg.ln_eps
    x = x.to(spec.dtype)
    if not centre:
        return x / torch.sqrt((x * x).mean(dim, keepdim=True) + eps) * w + b
    mean = x.mean(dim, keepdim=True)
    var = x.var(dim, keepdim=True, unbiased=unbiased)
    normed = (x - mean) / (torch.sqrt(var) + eps if eps_outside else torch.sqrt(var + eps))
    return normed * w + b if affine else normed


def _ln_cases(thorough: bool) -> list[Case]:
    cases = _module_cases("ln", thorough, 14)
    g = _tgen(thorough, 16 if thorough else 17)
    spec_eps = _spec("ln", _cfg(5, 1, ln_eps=1e-2), g)
    cases.append(Case((0.3 + 0.05 * _randn(g, 2, 3, 5), spec_eps),
                      "eps=1e-2 (not the default) and rows of small variance, where eps matters"))
    if thorough:
        spec_big = _spec("ln", _cfg(6, 1, ln_eps=0.5), g, torch.float64)
        cases.append(Case((_randn(g, 3, 6, dtype=torch.float64), spec_big), "eps=0.5, float64"))
        g = _tgen(thorough, 15)
        spec = _spec("ln", _cfg(6, 1), g, torch.float64)
        flat = torch.full((2, 3, 6), 0.7, dtype=torch.float64)
        tiny = 0.7 + 1e-3 * _randn(g, 2, 3, 6, dtype=torch.float64)
        cases += [Case((flat, spec), "constant rows (variance 0): the output must be the bias, not nan"),
                  Case((tiny, spec), "rows with tiny variance (1e-6): eps matters")]
        spec4 = _spec("ln", _cfg(4, 1), g)
        cases.append(Case((_randn(g, 3, 4, scale=2.0), spec4), "2-D input [batch, d_model], d_model 4"))
    return cases


@_keeps_rng
def check_gpt_layer_norm(cls: Any, thorough: bool = False) -> None:
    """LayerNorm(d_model, eps)(x [..., d_model]) -> same shape."""
    __tracebackhide__ = True
    _guard()
    learner = _module_fn(cls, "LayerNorm", lambda c, cfg: c(cfg.d_model, cfg.ln_eps))
    run_check("LayerNorm", learner, _ref_fn(lambda cfg: ref.LayerNorm(cfg.d_model, cfg.ln_eps)),
              _ln_cases(thorough), compare_fn=_compare_outputs(1e-4, 1e-5), thorough=thorough, mistakes=[
                  Mistake("you used the unbiased variance (divides by d-1; `torch.var`'s default). LayerNorm divides "
                          "by d: `x.var(-1, unbiased=False)` or the mean of squared deviations.",
                          lambda x, s: _ln_variant(x, s, unbiased=True)),
                  Mistake("eps belongs *inside* the square root: sqrt(var + eps).",
                          lambda x, s: _ln_variant(x, s, eps_outside=True)),
                  Mistake("you normalised over the wrong axis: statistics are per position, over the last axis.",
                          lambda x, s: _ln_variant(x, s, dim=0)),
                  Mistake("you forgot the learned scale and shift: multiply by self.w and add self.b.",
                          lambda x, s: _ln_variant(x, s, affine=False)),
                  Mistake("you did not subtract the mean (that is RMSNorm, used by other models, not GPT-2's LayerNorm).",
                          lambda x, s: _ln_variant(x, s, centre=False)),
              ])


def _mlp_variant(x, spec, act):
    s = spec.state
    x = x.to(spec.dtype)
    hidden = F.linear(x, s["fc_in.weight"].to(spec.dtype), s["fc_in.bias"].to(spec.dtype))
    if act == "after":
        return F.gelu(F.linear(hidden, s["fc_out.weight"].to(spec.dtype), s["fc_out.bias"].to(spec.dtype)),
                      approximate="tanh")
    hidden = {"relu": F.relu, "exact": F.gelu, "none": lambda y: y}[act](hidden)
    return F.linear(hidden, s["fc_out.weight"].to(spec.dtype), s["fc_out.bias"].to(spec.dtype))


@_keeps_rng
def check_gpt_mlp(cls: Any, thorough: bool = False) -> None:
    """MLP(cfg)(x [b, t, d_model]) -> [b, t, d_model]: fc_in, GELU (tanh approximation), fc_out."""
    __tracebackhide__ = True
    _guard()
    learner = _module_fn(cls, "MLP", lambda c, cfg: c(cfg))
    run_check("MLP", learner, _ref_fn(ref.MLP), _module_cases("mlp", thorough, 16),
              compare_fn=_compare_outputs(1e-4, 1e-5), thorough=thorough, mistakes=[
                  Mistake("you used the exact (erf) GELU; GPT-2 uses the tanh approximation: "
                          "`F.gelu(h, approximate='tanh')`. They differ by up to ~1e-3, enough to miss GPT-2's logits.",
                          lambda x, s: _mlp_variant(x, s, "exact")),
                  Mistake("you used ReLU; GPT-2's MLP uses GELU (tanh approximation).",
                          lambda x, s: _mlp_variant(x, s, "relu")),
                  Mistake("there is no non-linearity between fc_in and fc_out.", lambda x, s: _mlp_variant(x, s, "none")),
                  Mistake("the GELU goes between the two layers, not after fc_out.",
                          lambda x, s: _mlp_variant(x, s, "after")),
              ])


def _block_variant(x, spec, kind):
    block = _build(lambda: ref.Block(spec.cfg), spec)
    x = x.to(spec.dtype)
    with torch.no_grad():
        if kind == "no_residual":
            x = block.attn(block.ln1(x))
            return block.mlp(block.ln2(x))
        if kind == "no_attn_residual":
            x = block.attn(block.ln1(x))
            return x + block.mlp(block.ln2(x))
        if kind == "post_norm":
            x = block.ln1(x + block.attn(x))
            return block.ln2(x + block.mlp(x))
        if kind == "parallel":
            return x + block.attn(block.ln1(x)) + block.mlp(block.ln2(x))
        if kind == "one_norm":
            x = x + block.attn(block.ln1(x))
            return x + block.mlp(block.ln1(x))
    raise ValueError(kind)


@_keeps_rng
def check_pre_norm_block(cls: Any, thorough: bool = False) -> None:
    """Block(cfg)(x [b, t, d_model]) -> [b, t, d_model]: x + attn(ln1(x)), then + mlp(ln2(.))."""
    __tracebackhide__ = True
    _guard()
    learner = _module_fn(cls, "Block", lambda c, cfg: c(cfg))
    run_check("Block", learner, _ref_fn(ref.Block), _module_cases("block", thorough, 17),
              compare_fn=_diagnosing(_compare_outputs(1e-4, 1e-5), learner, _diagnose_block),
              thorough=thorough, mistakes=[
                  Mistake("the residual connections are missing: each sublayer's output is *added* to x "
                          "(x = x + attn(ln1(x))), not substituted for it.", lambda x, s: _block_variant(x, s, "no_residual")),
                  Mistake("the attention sublayer has no residual connection: x = x + self.attn(self.ln1(x)).",
                          lambda x, s: _block_variant(x, s, "no_attn_residual")),
                  Mistake("this is a *post*-norm block (normalise after adding); GPT-2 normalises the sublayer's "
                          "input: x + attn(ln1(x)).", lambda x, s: _block_variant(x, s, "post_norm")),
                  Mistake("attention and MLP both read the block's input (a parallel block); in GPT-2 the MLP reads "
                          "the residual stream *after* attention has been added.",
                          lambda x, s: _block_variant(x, s, "parallel")),
                  Mistake("you used ln1 before the MLP too; the MLP has its own LayerNorm, ln2.",
                          lambda x, s: _block_variant(x, s, "one_norm")),
              ])


def _gpt_cases(thorough: bool) -> list[Case]:
    g = _tgen(thorough, 18)

    def case(cfg, b, t, label, dtype=torch.float32, strided=False):
        spec = _spec("gpt", cfg, g, dtype)
        tokens = torch.randint(0, cfg.vocab_size, (b, t), generator=g)
        if strided:
            tokens = _strided(tokens)
        return Case((tokens, spec), label)

    cases = [case(_cfg(8, 2, n_layers=1), 1, 5, "1 layer, d_model 8, 5 tokens"),
             case(_cfg(12, 3, n_layers=2), 2, 6, "2 layers, d_model 12, batch 2"),
             _meta_case("gpt", _cfg(4, 1, n_layers=1, vocab=5, n_ctx=4), g, 1, 3)]
    if thorough:
        cases.append(case(_cfg(8, 2, n_layers=2, ln_eps=0.3), 2, 6, "a config with ln_eps=0.3 (not the default)"))
        cases += [case(_cfg(16, 4, n_layers=3, vocab=7), 2, 12, "3 layers; the sequence fills the context"),
                  case(_cfg(8, 2, n_layers=2), 3, 1, "a single token"),
                  case(_cfg(12, 2, n_layers=2, vocab=30, n_ctx=20), 2, 9, "float64", dtype=torch.float64),
                  case(_cfg(8, 1, n_layers=1, vocab=5), 4, 7, "non-contiguous tokens", strided=True),
                  case(_cfg(16, 8, n_layers=2, vocab=40, n_ctx=10, d_mlp=24), 2, 8, "8 heads, d_mlp 24")]
    return cases


def _gpt_variant(tokens, spec, kind):
    model = _build(lambda: ref.GPT(spec.cfg), spec)
    with torch.no_grad():
        x = model.W_E[tokens] + (model.W_pos[:tokens.shape[-1]] if kind != "no_pos" else 0)
        for block in model.blocks:
            x = block(x)
        if kind != "no_ln_f":
            x = model.ln_f(x)
        return x @ model.W_E.T


@_keeps_rng
def check_gpt_model(cls: Any, thorough: bool = False) -> None:
    """GPT(cfg)(tokens [b, t]) -> logits [b, t, vocab]: embed, blocks, ln_f, tied unembedding."""
    __tracebackhide__ = True
    _guard()
    learner = _module_fn(cls, "GPT", lambda c, cfg: c(cfg))
    run_check("GPT", learner, _ref_fn(ref.GPT), _gpt_cases(thorough),
              compare_fn=_diagnosing(_compare_outputs(2e-4, 2e-5), learner, _diagnose_gpt),
              thorough=thorough, mistakes=[
                  Mistake("the final LayerNorm `ln_f` is missing before the unembedding.",
                          lambda t, s: _gpt_variant(t, s, "no_ln_f")),
                  Mistake("the position embeddings are missing.", lambda t, s: _gpt_variant(t, s, "no_pos")),
              ])


# --------------------------------------------------------------------------- 9. loading GPT-2 weights

def _hf_cases(thorough: bool) -> list[Case]:
    g = _tgen(thorough, 19)

    def case(cfg, label):
        source = _build(lambda: ref.GPT(cfg), _spec("gpt", cfg, g))
        return Case((ref.gpt2_state_dict(source), cfg), label)

    cases = [case(_cfg(8, 2, n_layers=1), "1 layer, d_model 8")]
    if thorough:
        cases += [case(_cfg(12, 3, n_layers=2, vocab=17), "2 layers, d_model 12, 3 heads"),
                  case(_cfg(16, 4, n_layers=3, vocab=9, n_ctx=6, d_mlp=40), "3 layers, d_mlp 40, n_ctx 6")]
    return cases


def _loaded_state(loader: Callable[..., Any], name: str, hf_state: dict, cfg: ref.GPTConfig, where: str) -> Any:
    torch.manual_seed(0)
    target = ref.GPT(cfg)
    before = {k: v.clone() for k, v in hf_state.items()}
    returned = call(loader, name, (target, hf_state), None, where)
    for k, v in hf_state.items():
        if not torch.equal(v, before[k]):
            return _Problem(f"`{name}` changed the HuggingFace tensor `{k}` in place; copy from it, don't modify it "
                            "(use `.T` or `.t()`, which return new views, not `.t_()`).")
    model = returned if isinstance(returned, nn.Module) else target
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _compare_loaded(got: Any, expected: dict, case: Case) -> str | None:
    if isinstance(got, _Problem):
        return got.message
    for key, want in expected.items():
        have = got.get(key)
        if have is None:
            return f"the loaded model has no `{key}`"
        if have.shape == want.shape and torch.allclose(have, want, rtol=0, atol=0):
            continue
        hint = ""
        if have.shape == want.shape and have.dim() == 2 and torch.equal(have, want.T):
            hint = ("\n  Likely cause: HuggingFace's Conv1D stores weights as [in, out]; nn.Linear wants [out, in]: "
                    "transpose (`.T`).")
        else:
            for other, value in expected.items():
                if other != key and value.shape == have.shape and torch.equal(have, value):
                    hint = (f"\n  Likely cause: `{key}` received the weights that belong in `{other}`. c_attn holds "
                            "query, key and value side by side along its *output* (last) axis, in that order.")
                    break
        problem = compare(have, want, rtol=0, atol=1e-7, what=f"`{key}` after loading")
        return (problem or f"`{key}` after loading differs") + hint
    return None


@_keeps_rng
def check_load_gpt2_weights(fn: Callable[..., Any], thorough: bool = False) -> None:
    """load_gpt2_weights(model, hf_state) copies a HuggingFace GPT-2 state dict into `model` and returns it."""
    __tracebackhide__ = True
    _guard()
    name = "load_gpt2_weights"
    if not callable(fn):
        raise CheckFailure(f"expected a function for `{name}`, got {describe(fn)}")
    cases = _hf_cases(thorough)
    for i, case in enumerate(cases, 1):
        hf_state, cfg = case.args
        where = f"case {i} of {len(cases)} ({case.label}; a GPT2LMHeadModel state dict with {len(hf_state)} tensors)"
        expected = {k: v.detach().clone() for k, v in ref.load_gpt2_weights(ref.GPT(cfg), hf_state).state_dict().items()}
        torch.manual_seed(0)
        fresh = {k: v.detach().clone() for k, v in ref.GPT(cfg).state_dict().items()}
        got = _loaded_state(fn, name, hf_state, cfg, where)
        if not isinstance(got, _Problem):
            for key, value in got.items():
                want = expected[key]
                if value.shape == want.shape and not torch.equal(value, want) and torch.equal(value, fresh[key]):
                    raise CheckFailure(f"`{name}` is wrong on {where}:\n  `{key}` was never copied from the "
                                       "HuggingFace state dict (it still holds its random initial value).")
        problem = _compare_loaded(got, expected, case)
        if problem:
            raise CheckFailure(f"`{name}` is wrong on {where}:\n  {problem}")
    print(f"✓ {name}: all {len(cases)} {'thorough' if thorough else 'quick'} checks passed")
