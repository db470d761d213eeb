"""Reference solutions for chapter 06 (PyTorch fundamentals).

Autograd for an input gradient, the chapter 04 NumPy MLP rebuilt as an nn.Module
(and its gradients read back in NumPy's layout), a Dataset for the digits, a
training and an evaluation loop, checkpoints, and a small CNN and RNN.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

# --------------------------------------------------------------------------- autograd


def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d(sum_i logits[i, target[i]]) / dx: each example's gradient of its target logit, shaped like x.

    Leaves x and the model's parameter gradients untouched.
    """
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)                                        # [batch, classes]
    score = logits.gather(1, target.view(-1, 1)).sum()       # examples are independent: one backward for all
    (grad,) = torch.autograd.grad(score, x)
    return grad


# --------------------------------------------------------------------------- the NumPy MLP as a module


class TorchMLP(nn.Module):
    """Linear -> ReLU -> ... -> Linear, the layers in `self.layers` (an nn.ModuleList of nn.Linear)."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def load_numpy_params(model: TorchMLP, params: dict[str, np.ndarray]) -> None:
    """Copy the NumPy MLP's params ("W0" [in, out], "b0" [out], ...) into model.layers, in place."""
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            layer.weight.copy_(torch.as_tensor(params[f"W{i}"]).T)   # nn.Linear stores [out, in]
            layer.bias.copy_(torch.as_tensor(params[f"b{i}"]))


def torch_grads_as_numpy(model: TorchMLP, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict[str, np.ndarray]]:
    """Mean cross-entropy of model(x) against y, and every gradient in the NumPy MLP's layout."""
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = {}
    for i, layer in enumerate(model.layers):
        grads[f"W{i}"] = layer.weight.grad.T.detach().cpu().numpy().copy()
        grads[f"b{i}"] = layer.bias.grad.detach().cpu().numpy().copy()
    return loss.item(), grads


# --------------------------------------------------------------------------- data


class DigitsDataset(Dataset):
    """(image, label) pairs from arrays: image float32 [64] (or [1, 8, 8] with as_image), label int64."""

    def __init__(self, x: np.ndarray, y: np.ndarray, as_image: bool = False) -> None:
        self.x = torch.tensor(np.asarray(x), dtype=torch.float32)
        self.y = torch.tensor(np.asarray(y), dtype=torch.int64)
        self.as_image = as_image

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.x[i]
        if self.as_image:
            image = image.reshape(1, 8, 8)
        return image, self.y[i]


# --------------------------------------------------------------------------- training and evaluation


def train_one_epoch(model: nn.Module, loader: Any, optimizer: Any, device: Any) -> float:
    """One pass over `loader` with cross-entropy; returns the mean loss per example."""
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        count += len(y)
    return total / count


def evaluate(model: nn.Module, loader: Any, device: Any) -> tuple[float, float]:
    """(mean cross-entropy per example, accuracy) over `loader`, in eval mode and without gradients."""
    model.eval()
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(dim=1) == y).sum().item()
            count += len(y)
    return total / count, correct / count


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: Any, epoch: int) -> None:
    """Save {"model": state_dict, "optimizer": state_dict, "epoch": epoch} to `path`."""
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, path)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: Any) -> int:
    """Restore model and optimizer in place from `path`; return the saved epoch."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return int(checkpoint["epoch"])


# --------------------------------------------------------------------------- a CNN and an RNN for 8x8 digits


class DigitsCNN(nn.Module):
    """[B, 1, 8, 8] -> conv 16 -> ReLU -> pool -> conv 32 -> ReLU -> pool -> flatten 128 -> linear 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)       # [B, 16, 4, 4]
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)       # [B, 32, 2, 2]
        return self.fc(x.flatten(1))                         # [B, 10]


class DigitsRNN(nn.Module):
    """Reads an 8x8 image one row at a time: h_t = tanh(W_ih row_t + b + W_hh h_{t-1}); logits from h_8."""

    def __init__(self, hidden_size: int = 64) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.input_to_hidden = nn.Linear(8, hidden_size)
        self.hidden_to_hidden = nn.Linear(hidden_size, hidden_size, bias=False)
        self.readout = nn.Linear(hidden_size, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(x.shape[0], 8, 8)                   # [B, time = row, features = 8 pixels]
        h = torch.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        for t in range(8):
            h = torch.tanh(self.input_to_hidden(rows[:, t]) + self.hidden_to_hidden(h))
        return self.readout(h)
