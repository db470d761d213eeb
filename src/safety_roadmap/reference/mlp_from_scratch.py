"""Reference solutions for chapter 04 (an MLP from scratch in NumPy).

Every forward and backward pass written by hand. Conventions, used by the
checks and by later chapters (the PyTorch chapter compares gradients with
these):

- a linear layer computes ``x @ W + b`` with x [batch, in], W [in, out], b [out];
- a loss is the MEAN over the batch, so its gradients carry a ``1 / batch``;
- ``MLP`` stores its parameters in ``params`` under "W0", "b0", "W1", "b1", ...
"""
from __future__ import annotations

import numpy as np


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x [batch, in] @ W [in, out] + b [out] -> [batch, out]."""
    return x @ W + b


def linear_backward(
    grad_out: np.ndarray, x: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Given dL/d(out) [batch, out], return (dL/dx [batch, in], dL/dW [in, out], dL/db [out])."""
    grad_x = grad_out @ W.T
    grad_W = x.T @ grad_out
    grad_b = grad_out.sum(axis=0)
    return grad_x, grad_W, grad_b


def relu_forward(x: np.ndarray) -> np.ndarray:
    """max(x, 0), elementwise, any shape."""
    return np.maximum(x, 0)


def relu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dL/dx given dL/d(relu(x)) and the relu's INPUT x. The gradient at exactly 0 is taken as 0."""
    return grad_out * (x > 0)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) [batch, classes] against integer `labels` [batch],
    and its gradient with respect to the logits, (softmax - one_hot) / batch. Numerically stable
    for any finite logits (subtracts the row max before exponentiating)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = float(-log_probs[rows, labels].mean())
    grad = np.exp(log_probs)
    grad[rows, labels] -= 1.0
    return loss, grad / n


class MLP:
    """A multi-layer perceptron: Linear -> ReLU -> ... -> Linear (no activation after the last).

    ``sizes`` lists the layer widths, e.g. [64, 128, 10]. Weights are He-normal,
    ``rng.normal(0, sqrt(2 / fan_in))`` drawn in order W0, W1, ... from
    ``np.random.default_rng(seed)``; biases start at zero.
    """

    def __init__(self, sizes: list[int], seed: int = 0):
        rng = np.random.default_rng(seed)
        self.sizes = list(sizes)
        self.params: dict[str, np.ndarray] = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.params[f"W{i}"] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
            self.params[f"b{i}"] = np.zeros(fan_out)

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def _forward_with_cache(self, x: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        cache = []  # per layer: (layer input, pre-activation)
        h = x
        for i in range(self.num_layers):
            z = linear_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
            cache.append((h, z))
            h = relu_forward(z) if i < self.num_layers - 1 else z
        return h, cache

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x [batch, sizes[0]] -> logits [batch, sizes[-1]]."""
        return self._forward_with_cache(x)[0]

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean softmax cross-entropy on (x, y) and its gradient for every parameter (same keys as params)."""
        logits, cache = self._forward_with_cache(x)
        loss, grad = softmax_cross_entropy(logits, y)
        grads: dict[str, np.ndarray] = {}
        for i in reversed(range(self.num_layers)):
            h, z = cache[i]
            if i < self.num_layers - 1:
                grad = relu_backward(grad, z)
            grad, grads[f"W{i}"], grads[f"b{i}"] = linear_backward(grad, h, self.params[f"W{i}"])
        return loss, {k: grads[k] for k in self.params}


def numerical_gradient(f, param: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Central-difference estimate of d f() / d param, nudging `param` IN PLACE one entry at a
    time (and restoring it). `f` takes no arguments and returns a float."""
    grad = np.zeros_like(param, dtype=np.float64)
    it = np.nditer(param, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = param[idx]
        param[idx] = old + eps
        f_plus = f()
        param[idx] = old - eps
        f_minus = f()
        param[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def sgd_step(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
    """Plain SGD, in place: param -= lr * grad for every key."""
    for k in params:
        params[k] -= lr * grads[k]


def iterate_minibatches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator):
    """Yield shuffled (x_batch, y_batch) pairs covering every example once; the last batch may be short."""
    order = rng.permutation(len(y))
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def evaluate(model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on (x, y)."""
    logits = model.forward(x)
    loss, _ = softmax_cross_entropy(logits, y)
    return loss, float((logits.argmax(axis=1) == y).mean())


def train(model, data, epochs: int, lr: float, batch_size: int, seed: int = 0, progress: bool = True) -> dict:
    """Mini-batch SGD with the learning rate decaying linearly from `lr`; per-epoch train/test loss and accuracy."""
    from tqdm.auto import trange

    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {"train_loss": [], "test_loss": [], "train_acc": [], "test_acc": []}
    for epoch in trange(epochs, desc="training", disable=not progress):
        lr_now = lr * (1 - epoch / epochs)
        for xb, yb in iterate_minibatches(data.x_train, data.y_train, batch_size, rng):
            _, grads = model.loss_and_grads(xb, yb)
            sgd_step(model.params, grads, lr_now)
        for split, x, y in [("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)]:
            loss, acc = evaluate(model, x, y)
            history[f"{split}_loss"].append(loss)
            history[f"{split}_acc"].append(acc)
    return history
