"""Mutants and alternatives for chapter 14_superposition_and_saes.

TransformerLens is imported and the spliced-loss check's models are booted at import (test
collection), so that the timed alternative tests measure the checks, not the warm-up.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import transformer_lens  # noqa: F401  (warm-up, see the module docstring)

from safety_roadmap.checks import superposition_and_saes as checks
from safety_roadmap.reference import superposition_and_saes as ref

checks.warm_up()

# --------------------------------------------------------------------------- toy_forward


def toy_no_relu(W, b, x):
    return x @ W.transpose(-1, -2) @ W + b[:, None, :]


def toy_bias_after_relu(W, b, x):
    return torch.relu(x @ W.transpose(-1, -2) @ W) + b[:, None, :]


def toy_transposed(W, b, x):
    return torch.relu(x @ W @ W.transpose(-1, -2) + b[:, None, :])   # crashes unless square; wrong when square


def toy_relu_hidden(W, b, x):
    return torch.relu(torch.relu(x @ W.transpose(-1, -2)) @ W + b[:, None, :])


def toy_matmul(W, b, x):
    h = torch.matmul(x, W.mT)
    return F.relu(torch.matmul(h, W) + b.unsqueeze(1))


def toy_loop(W, b, x):
    outs = []
    for i in range(W.shape[0]):
        outs.append(torch.clamp(x[i] @ W[i].T @ W[i] + b[i], min=0))
    return torch.stack(outs)


# --------------------------------------------------------------------------- importance_loss


def loss_wrong_axis(x, x_hat, importance):
    return (importance[:, None] * (x - x_hat) ** 2).sum(-1).mean(-1)


def loss_mean_features(x, x_hat, importance):
    return (importance * (x - x_hat) ** 2).mean(dim=(-2, -1))


def loss_unweighted(x, x_hat, importance):
    return ((x - x_hat) ** 2).sum(-1).mean(-1)


def loss_one_number(x, x_hat, importance):
    return (importance * (x - x_hat) ** 2).sum(-1).mean()


def loss_einsum(x, x_hat, importance):
    return torch.einsum("ibn,n->i", (x - x_hat).pow(2), importance) / x.shape[1]


# --------------------------------------------------------------------------- feature_dimensionality


def dim_unnormalised(W):
    norms = W.norm(dim=0)
    d = norms ** 2 / ((W.T @ W) ** 2).sum(1)
    return torch.nan_to_num(d)


def dim_nan_for_zero(W):
    norms = W.norm(dim=0)
    unit = W / norms
    return norms ** 2 / ((unit.T @ W) ** 2).sum(1)


def dim_rows(W):
    return ref.feature_dimensionality(W.T)


def dim_loop(W):
    out = torch.zeros(W.shape[1], dtype=W.dtype)
    for i in range(W.shape[1]):
        wi = W[:, i]
        n2 = float(wi @ wi)
        if n2 < 1e-12:
            continue
        overlaps = sum(float(wi @ W[:, j]) ** 2 for j in range(W.shape[1])) / n2
        out[i] = n2 / overlaps
    return out


def dim_gram(W):
    gram = W.T @ W                                   # (W_i · W_j)
    sq = torch.diagonal(gram)                        # ||W_i||²
    denom = (gram ** 2).sum(1) / sq.clamp_min(1e-30)
    return torch.where(sq > 1e-12, sq / denom.clamp_min(1e-30), torch.zeros_like(sq))


# --------------------------------------------------------------------------- SparseAutoencoder


class _Base(ref.SparseAutoencoder):
    """The given __init__ and forward; each subclass writes its own encode and decode."""


class SaeBiasAfterRelu(_Base):
    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc) + self.b_enc

    def decode(self, z):
        return z @ self.W_dec + self.b_dec


class SaeNoPreBias(_Base):
    def encode(self, x):
        return torch.relu(x @ self.W_enc + self.b_enc)

    def decode(self, z):
        return z @ self.W_dec + self.b_dec


class SaeNoDecoderBias(_Base):
    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, z):
        return z @ self.W_dec


class SaeTiedDecoder(_Base):
    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, z):
        return z @ self.W_enc.T + self.b_dec


class SaeLinearLayers(_Base):
    def encode(self, x):
        return F.relu(F.linear(x - self.b_dec, self.W_enc.T, self.b_enc))

    def decode(self, z):
        return F.linear(z, self.W_dec.T, self.b_dec)


class SaeEinsum(_Base):
    def encode(self, x):
        return torch.einsum("...d,dn->...n", x - self.b_dec, self.W_enc).add(self.b_enc).clamp(min=0)

    def decode(self, z):
        return torch.einsum("...n,nd->...d", z, self.W_dec) + self.b_dec


# --------------------------------------------------------------------------- sae_loss


def sl_l1_on_output(sae, x, l1_coeff):
    x_hat, z = sae(x)
    mse = ((x_hat - x) ** 2).sum(-1).mean()
    l1 = x_hat.abs().sum(-1).mean()
    return mse + l1_coeff * l1, mse, l1


def sl_mse_mean(sae, x, l1_coeff):
    x_hat, z = sae(x)
    mse = F.mse_loss(x_hat, x)
    l1 = z.abs().sum(-1).mean()
    return mse + l1_coeff * l1, mse, l1


def sl_l1_mean(sae, x, l1_coeff):
    x_hat, z = sae(x)
    mse = ((x_hat - x) ** 2).sum(-1).mean()
    l1 = z.abs().mean()
    return mse + l1_coeff * l1, mse, l1


def sl_detached(sae, x, l1_coeff):
    with torch.no_grad():
        x_hat, z = sae(x)
    mse = ((x_hat - x) ** 2).sum(-1).mean()
    l1 = z.abs().sum(-1).mean()
    return mse + l1_coeff * l1, mse, l1


def sl_norms(sae, x, l1_coeff):
    x_hat, z = sae(x)
    mse = torch.linalg.vector_norm(x_hat - x, dim=-1).pow(2).mean()
    l1 = torch.linalg.vector_norm(z, ord=1, dim=-1).mean()
    return mse + l1_coeff * l1, mse, l1


# --------------------------------------------------------------------------- train_sae


def _loop(sae, data, l1_coeff, n_steps, batch_size, lr, seed, loss_fn, *, normalise="after", zero_grad=True,
          global_rng=False, reset_fired=True, fired_before_step=False):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    since = torch.zeros(sae.W_dec.shape[0], dtype=torch.long)
    losses = []
    for _ in range(n_steps):
        idx = torch.randint(0, data.shape[0], (batch_size,)) if global_rng else \
            torch.randint(0, data.shape[0], (batch_size,), generator=g)
        x = data[idx]
        if normalise == "before":
            ref.normalize_decoder(sae)
        loss, _, _ = loss_fn(sae, x, l1_coeff)
        with torch.no_grad():
            fired_early = (sae.encode(x) > 0).any(0)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
        if normalise == "after":
            ref.normalize_decoder(sae)
        with torch.no_grad():
            fired = fired_early if fired_before_step else (sae.encode(x) > 0).any(0)
        since = torch.where(fired, torch.zeros_like(since), since + 1) if reset_fired else since + (~fired).long()
        losses.append(loss.item())
    return {"loss": losses, "steps_since_fired": since}


def train_no_normalise(sae, data, l1_coeff, n_steps, batch_size=256, lr=1e-3, seed=0, loss_fn=ref.sae_loss):
    return _loop(sae, data, l1_coeff, n_steps, batch_size, lr, seed, loss_fn, normalise="never")


def train_normalise_before_step(sae, data, l1_coeff, n_steps, batch_size=256, lr=1e-3, seed=0, loss_fn=ref.sae_loss):
    return _loop(sae, data, l1_coeff, n_steps, batch_size, lr, seed, loss_fn, normalise="before")


def train_no_zero_grad(sae, data, l1_coeff, n_steps, batch_size=256, lr=1e-3, seed=0, loss_fn=ref.sae_loss):
    return _loop(sae, data, l1_coeff, n_steps, batch_size, lr, seed, loss_fn, zero_grad=False)


def train_global_rng(sae, data, l1_coeff, n_steps, batch_size=256, lr=1e-3, seed=0, loss_fn=ref.sae_loss):
    torch.manual_seed(seed)
    return _loop(sae, data, l1_coeff, n_steps, batch_size, lr, seed, loss_fn, global_rng=True)


def train_never_reset(sae, data, l1_coeff, n_steps, batch_size=256, lr=1e-3, seed=0, loss_fn=ref.sae_loss):
    return _loop(sae, data, l1_coeff, n_steps, batch_size, lr, seed, loss_fn, reset_fired=False)


def train_fired_before_step(sae, data, l1_coeff, n_steps, batch_size=256, lr=1e-3, seed=0, loss_fn=ref.sae_loss):
    return _loop(sae, data, l1_coeff, n_steps, batch_size, lr, seed, loss_fn, fired_before_step=True)


def train_one_batch(sae, data, l1_coeff, n_steps, batch_size=256, lr=1e-3, seed=0, loss_fn=ref.sae_loss):
    g = torch.Generator().manual_seed(seed)
    x = data[torch.randint(0, data.shape[0], (batch_size,), generator=g)]   # the same batch every step
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    since = torch.zeros(sae.W_dec.shape[0], dtype=torch.long)
    losses = []
    for _ in range(n_steps):
        loss = loss_fn(sae, x, l1_coeff)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref.normalize_decoder(sae)
        fired = (sae.encode(x) > 0).any(0)
        since = torch.where(fired, 0, since + 1)
        losses.append(loss.item())
    return {"loss": losses, "steps_since_fired": since}


def train_alt_f_normalize(sae, data, l1_coeff, n_steps, batch_size=256, lr=1e-3, seed=0, loss_fn=ref.sae_loss):
    gen = torch.Generator()
    gen.manual_seed(seed)
    optimiser = torch.optim.Adam(list(sae.parameters()), lr=lr)
    steps_since = torch.zeros(sae.W_dec.shape[0], dtype=torch.long)
    history = []
    for _ in range(n_steps):
        batch = data[torch.randint(0, len(data), (batch_size,), generator=gen)]
        loss = loss_fn(sae, batch, l1_coeff)[0]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        sae.W_dec.data = F.normalize(sae.W_dec.data, dim=1)
        with torch.no_grad():
            active = sae(batch)[1].gt(0).any(dim=0)
        steps_since[active] = 0
        steps_since[~active] += 1
        history.append(float(loss.detach()))
    return {"loss": history, "steps_since_fired": steps_since}


# --------------------------------------------------------------------------- feature_recovery


def rec_unnormalised(W_dec, true_dirs, threshold=0.9):
    best = (true_dirs @ W_dec.T).max(dim=1).values
    return best, int((best >= threshold).sum())


def rec_per_latent(W_dec, true_dirs, threshold=0.9):
    d = F.normalize(W_dec, dim=-1)
    t = F.normalize(true_dirs, dim=-1)
    best = (t @ d.T).max(dim=0).values
    return best, int((best >= threshold).sum())


def rec_strict(W_dec, true_dirs, threshold=0.9):
    best, _ = ref.feature_recovery(W_dec, true_dirs, threshold)
    return best, int((best > threshold).sum())


def rec_abs(W_dec, true_dirs, threshold=0.9):
    d = F.normalize(W_dec, dim=-1)
    t = F.normalize(true_dirs, dim=-1)
    best = (t @ d.T).abs().max(dim=1).values
    return best, int((best >= threshold).sum())


def rec_cosine_similarity(W_dec, true_dirs, threshold=0.9):
    cos = F.cosine_similarity(true_dirs[:, None, :], W_dec[None, :, :], dim=-1)   # [n_true, n_latents]
    best = cos.amax(dim=1)
    return best, int(torch.count_nonzero(best >= threshold))


# --------------------------------------------------------------------------- spliced_loss


def _ce(logits, tokens):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)).item()


def sp_next_layer(model, sae, tokens, layer):
    hook = f"blocks.{layer + 1}.hook_resid_pre" if layer + 1 < model.cfg.n_layers else f"blocks.{layer}.hook_resid_post"
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda r, hook: sae(r)[0])])
    return _ce(logits, tokens)


def sp_resid_post(model, sae, tokens, layer):
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_post",
                                                          lambda r, hook: sae(r)[0])])
    return _ce(logits, tokens)


def sp_no_return(model, sae, tokens, layer):
    def hook(resid, hook):
        sae(resid)[0]   # computed, never returned: the activation is unchanged

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])
    return _ce(logits, tokens)


def sp_unshifted(model, sae, tokens, layer):
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre",
                                                          lambda r, hook: sae(r)[0])])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1)).item()


def sp_in_place(model, sae, tokens, layer):
    def hook(resid, hook):
        resid[:] = sae(resid)[0]   # in place, returning nothing: also a valid way to replace it

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])
    return _ce(logits, tokens)


def sp_add_hook(model, sae, tokens, layer):
    from transformer_lens.utilities import get_act_name

    model.add_hook(get_act_name("resid_pre", layer), lambda r, hook: sae.decode(sae.encode(r)))
    try:
        with torch.no_grad():
            logits = model(tokens)
    finally:
        model.reset_hooks()
    logp = logits.log_softmax(-1)[:, :-1]
    return -logp.gather(-1, tokens[:, 1:, None]).mean().item()


# --------------------------------------------------------------------------- quiz

MUTANTS = {
    "toy_forward": [toy_no_relu, toy_bias_after_relu, toy_transposed, toy_relu_hidden],
    "importance_loss": [loss_wrong_axis, loss_mean_features, loss_unweighted, loss_one_number],
    "feature_dimensionality": [dim_unnormalised, dim_nan_for_zero, dim_rows],
    "sparse_autoencoder": [SaeBiasAfterRelu, SaeNoPreBias, SaeNoDecoderBias, SaeTiedDecoder],
    "sae_loss": [sl_l1_on_output, sl_mse_mean, sl_l1_mean, sl_detached],
    "train_sae": [train_no_normalise, train_normalise_before_step, train_no_zero_grad, train_global_rng,
                  train_never_reset, train_fired_before_step, train_one_batch],
    "feature_recovery": [rec_unnormalised, rec_per_latent, rec_strict, rec_abs],
    "spliced_loss": [sp_next_layer, sp_resid_post, sp_no_return, sp_unshifted],
    "linear_model_quiz": ["a", "c", "d"],
}

ALTERNATIVES = {
    "toy_forward": [toy_matmul, toy_loop],
    "importance_loss": [loss_einsum],
    "feature_dimensionality": [dim_loop, dim_gram],
    "sparse_autoencoder": [SaeLinearLayers, SaeEinsum],
    "sae_loss": [sl_norms],
    "train_sae": [train_alt_f_normalize],
    "feature_recovery": [rec_cosine_similarity],
    "spliced_loss": [sp_in_place, sp_add_hook],
    "linear_model_quiz": ["b", " B "],
}
