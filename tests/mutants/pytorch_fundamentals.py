"""Mutants and alternatives for chapter 06_pytorch_fundamentals."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

# =========================================================================== input_gradient


def grad_of_loss(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), target), x)   # the loss, not the logit
    return g


def grad_of_all_logits(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x)
    return g


def grad_of_probability(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    probs = F.softmax(model(x), dim=1)
    (g,) = torch.autograd.grad(probs[torch.arange(len(target)), target].sum(), x)
    return g


def grad_mean_over_batch(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).gather(1, target[:, None]).mean(), x)
    return g


def grad_marks_callers_x(model, x, target):
    x.requires_grad_(True)                                             # changes the caller's tensor
    model(x).gather(1, target[:, None]).sum().backward()
    g = x.grad.clone()
    model.zero_grad(set_to_none=True)
    return g


def grad_pollutes_params(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    model(x).gather(1, target[:, None]).sum().backward()               # also fills every parameter's .grad
    return x.grad


def grad_one_hot(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    score = (logits * F.one_hot(target, logits.shape[1]).to(logits.dtype)).sum()
    return torch.autograd.grad(score, x)[0]


def grad_backward_then_clean(model, x, target):
    leaf = x.clone().detach()
    leaf.requires_grad = True
    logits = model(leaf)
    logits[torch.arange(logits.shape[0]), target].sum().backward()
    model.zero_grad(set_to_none=True)
    return leaf.grad.detach()


def grad_backward_inputs_only(model, x, target):
    leaf = x.detach().clone().requires_grad_(True)
    score = model(leaf).gather(1, target[:, None]).sum()
    score.backward(inputs=[leaf])                                       # accumulates into leaf.grad only
    return leaf.grad


def grad_sets_eval(model, x, target):
    model.eval()                                                        # never switched back to train mode
    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)[0]


# =========================================================================== TorchMLP


class MLPReluAtEnd(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))                                  # also after the last layer
        return x


class MLPPlainList(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]   # invisible to PyTorch

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class MLPTransposedLayers(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(b, a) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class MLPNoActivation(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class MLPSequentialWithReLU(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        mods = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        self.layers = nn.Sequential(*mods[:-1])                        # ReLUs inside `layers`

    def forward(self, x):
        return self.layers(x)


class MLPFunctionalRelu(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList()
        for fan_in, fan_out in zip(sizes, sizes[1:]):
            self.layers.append(nn.Linear(fan_in, fan_out))

    def forward(self, x):
        *hidden, last = self.layers
        for layer in hidden:
            x = F.relu(layer(x))
        return last(x)


class MLPClamp(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)])

    def forward(self, x):
        h = x
        n = len(self.layers)
        for i in range(n):
            h = self.layers[i](h)
            h = h.clamp(min=0) if i + 1 < n else h
        return h


# =========================================================================== load_numpy_params


def load_not_transposed(model, params):
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            layer.weight.copy_(torch.as_tensor(params[f"W{i}"]))      # [in, out] into [out, in]
            layer.bias.copy_(torch.as_tensor(params[f"b{i}"]))


def load_shares_memory(model, params):
    for i, layer in enumerate(model.layers):
        layer.weight.data = torch.from_numpy(params[f"W{i}"]).T        # float64, and shares the NumPy buffer
        layer.bias.data = torch.from_numpy(params[f"b{i}"])


def load_shares_memory_float32(model, params):
    for i, layer in enumerate(model.layers):
        W = params[f"W{i}"]
        if W.dtype != np.float32:
            W = W.astype(np.float32)
        layer.weight.data = torch.from_numpy(W).T
        layer.bias.data = torch.from_numpy(params[f"b{i}"]).float()


def load_forgets_biases(model, params):
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            layer.weight.copy_(torch.as_tensor(params[f"W{i}"]).T)


def load_new_parameters(model, params):
    for i, layer in enumerate(model.layers):
        layer.weight = nn.Parameter(torch.tensor(params[f"W{i}"].T, dtype=torch.float32))
        layer.bias = nn.Parameter(torch.tensor(params[f"b{i}"], dtype=torch.float32))


def load_via_state_dict(model, params):
    state = {}
    for i in range(len(model.layers)):
        state[f"layers.{i}.weight"] = torch.tensor(params[f"W{i}"].T)
        state[f"layers.{i}.bias"] = torch.tensor(params[f"b{i}"])
    model.load_state_dict(state)                                       # copies in place, casting to float32


def load_loop_copy(model, params):
    for i, layer in enumerate(model.layers):
        with torch.no_grad():
            layer.weight[...] = torch.tensor(np.ascontiguousarray(params[f"W{i}"].T), dtype=layer.weight.dtype)
            layer.bias[...] = torch.tensor(params[f"b{i}"], dtype=layer.bias.dtype)


# =========================================================================== torch_grads_as_numpy


def _grads(model, transpose=True):
    out = {}
    for i, layer in enumerate(model.layers):
        out[f"W{i}"] = (layer.weight.grad.T if transpose else layer.weight.grad).detach().numpy().copy()
        out[f"b{i}"] = layer.bias.grad.detach().numpy().copy()
    return out


def grads_no_zero(model, x, y):
    loss = F.cross_entropy(model(x), y)
    loss.backward()                                                    # adds to any old .grad
    return loss.item(), _grads(model)


def grads_not_transposed(model, x, y):
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), _grads(model, transpose=False)


def grads_sum_loss(model, x, y):
    model.zero_grad()
    loss = F.cross_entropy(model(x), y, reduction="sum")
    loss.backward()
    return loss.item(), _grads(model)


def grads_double_softmax(model, x, y):
    model.zero_grad()
    loss = F.cross_entropy(F.softmax(model(x), dim=1), y)             # cross_entropy already applies softmax
    loss.backward()
    return loss.item(), _grads(model)


def grads_torch_keys(model, x, y):
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), {n: p.grad.numpy() for n, p in model.named_parameters()}


def grads_share_memory(model, x, y):
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = {}
    for i, layer in enumerate(model.layers):
        grads[f"W{i}"] = layer.weight.grad.T.numpy()                   # a view of .grad, not a copy
        grads[f"b{i}"] = layer.bias.grad.numpy()
    return loss.item(), grads


def grads_autograd(model, x, y):
    params = [p for layer in model.layers for p in (layer.weight, layer.bias)]
    loss = F.cross_entropy(model(x), y)
    gs = torch.autograd.grad(loss, params)                             # never touches .grad at all
    out = {}
    for i in range(len(model.layers)):
        out[f"W{i}"] = gs[2 * i].T.numpy()
        out[f"b{i}"] = gs[2 * i + 1].numpy()
    return loss, out


def grads_log_softmax(model, x, y):
    for p in model.parameters():
        p.grad = None
    logp = F.log_softmax(model(x), dim=-1)
    loss = -logp[torch.arange(len(y)), y].mean()
    loss.backward()
    return float(loss), {k: v for i, layer in enumerate(model.layers)
                         for k, v in ((f"W{i}", layer.weight.grad.clone().numpy().T),   # a copy, then a view of it
                                      (f"b{i}", layer.bias.grad.clone().numpy()))}


# =========================================================================== DigitsDataset


class _DS(Dataset):
    def __init__(self, x, y, as_image=False):
        self.x, self.y, self.as_image = x, y, as_image

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = torch.tensor(self.x[i], dtype=torch.float32)
        if self.as_image:
            img = img.reshape(1, 8, 8)
        return img, torch.tensor(self.y[i], dtype=torch.int64)


class DSLenOffByOne(_DS):
    def __len__(self):
        return len(self.x) - 1


class DSFloat64(_DS):
    def __getitem__(self, i):
        img = torch.from_numpy(np.asarray(self.x[i], dtype=np.float64))
        return (img.reshape(1, 8, 8) if self.as_image else img), torch.tensor(self.y[i], dtype=torch.int64)


class DSFloatLabels(_DS):
    def __getitem__(self, i):
        img, _ = super().__getitem__(i)
        return img, torch.tensor(float(self.y[i]))


class DSNoChannel(_DS):
    def __getitem__(self, i):
        img = torch.tensor(self.x[i], dtype=torch.float32)
        return (img.reshape(8, 8) if self.as_image else img), torch.tensor(self.y[i], dtype=torch.int64)


class DSFortranOrder(_DS):
    def __getitem__(self, i):
        img = torch.tensor(np.reshape(self.x[i], (8, 8), order="F"), dtype=torch.float32)
        return (img[None] if self.as_image else img.reshape(64)), torch.tensor(self.y[i], dtype=torch.int64)


class DSNormalisesInPlace(_DS):
    def __init__(self, x, y, as_image=False):
        x /= x.max()                                                   # rescales the caller's array
        super().__init__(x, y, as_image)


class DSInt32Labels(_DS):
    def __getitem__(self, i):
        img, _ = super().__getitem__(i)
        return img, torch.tensor(self.y[i])                            # keeps int32 labels as int32


class DSTensorsUpFront(Dataset):
    def __init__(self, x, y, as_image=False):
        self.images = torch.as_tensor(np.array(x), dtype=torch.float32)
        if as_image:
            self.images = self.images.view(-1, 1, 8, 8)
        self.labels = torch.as_tensor(np.array(y)).long()

    def __len__(self):
        return self.labels.shape[0]

    def __getitem__(self, idx):
        return self.images[idx], self.labels[idx]


class DSPythonIntLabels(Dataset):
    def __init__(self, x, y, as_image=False):
        self.x, self.y = np.array(x, dtype=np.float32), np.array(y)
        self.shape = (1, 8, 8) if as_image else (64,)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i].reshape(self.shape).copy()), int(self.y[i])


# =========================================================================== train_one_epoch


def train_no_zero_grad(model, loader, optimizer, device):
    model.train()
    total, n = 0.0, 0
    for x, y in loader:
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        n += len(y)
    return total / n


def _epoch_moving(model, loader, optimizer, move_x, move_y, train_mode=True):
    """A correct epoch, except where a batch part is not moved to the device or train mode is not set."""
    if train_mode:
        model.train()
    total, n = 0.0, 0
    for x, y in loader:
        loss = F.cross_entropy(model(move_x(x)), move_y(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        n += len(y)
    return total / n


def train_forgets_device(model, loader, optimizer, device):
    return _epoch_moving(model, loader, optimizer, lambda x: x, lambda y: y)       # nothing moved to `device`


def train_moves_inputs_only(model, loader, optimizer, device):
    return _epoch_moving(model, loader, optimizer, lambda x: x.to(device), lambda y: y)   # labels stay behind


def train_no_train_mode(model, loader, optimizer, device):
    return _epoch_moving(model, loader, optimizer, lambda x: x.to(device), lambda y: y.to(device),
                         train_mode=False)                              # model.train() never called


def train_returns_last_loss(model, loader, optimizer, device):
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def train_mean_of_batch_means(model, loader, optimizer, device):
    model.train()
    losses = []
    for x, y in loader:
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


def train_no_step(model, loader, optimizer, device):
    model.train()
    total, n = 0.0, 0
    for x, y in loader:
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        total += loss.item() * len(y)
        n += len(y)
    return total / n


def train_sum_loss(model, loader, optimizer, device):
    model.train()
    total, n = 0.0, 0
    for x, y in loader:
        loss = F.cross_entropy(model(x.to(device)), y.to(device), reduction="sum")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
        n += len(y)
    return total / n


def train_zero_after_step(model, loader, optimizer, device):
    model.train()
    seen = 0
    running = torch.zeros(())
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        running += loss.detach() * labels.numel()
        seen += labels.numel()
    return (running / seen).item()


def train_sum_then_divide(model, loader, optimizer, device):
    model.train(True)
    per_example = []
    for batch in loader:
        x, y = (t.to(device) for t in batch)
        optimizer.zero_grad()
        losses = F.cross_entropy(model(x), y, reduction="none")
        losses.mean().backward()
        optimizer.step()
        per_example.append(losses.detach())
    return torch.cat(per_example).mean().item()


# =========================================================================== evaluate


def eval_no_eval_mode(model, loader, device):
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x.to(device))
            total += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return total / n, correct / n


def eval_forgets_device(model, loader, device):
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)                                            # never moved to `device`
            total += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return total / n, correct / n


def eval_no_no_grad(model, loader, device):
    model.eval()
    total, correct, n = 0.0, 0, 0
    for x, y in loader:
        logits = model(x.to(device))
        total += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return total / n, correct / n


def eval_mean_of_batch_means(model, loader, device):
    model.eval()
    losses, correct, n = [], 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x.to(device))
            losses.append(F.cross_entropy(logits, y).item())
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return sum(losses) / len(losses), correct / n


def eval_counts_correct(model, loader, device):
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x.to(device))
            total += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return total / n, correct


def eval_argmax_wrong_axis(model, loader, device):
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x.to(device))
            total += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(0)[: len(y)] == y).sum().item()
            n += len(y)
    return total / n, correct / n


def eval_inference_mode(model, loader, device):
    model.eval()
    all_logits, all_y = [], []
    with torch.inference_mode():
        for x, y in loader:
            all_logits.append(model(x.to(device)))
            all_y.append(y.to(device))
    logits, y = torch.cat(all_logits), torch.cat(all_y)
    return F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


def eval_weighted(model, loader, device):
    was = model.training
    model.eval()
    loss_sum, hits, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x.to(device))
            loss_sum += F.cross_entropy(out, y.to(device)).item() * y.shape[0]
            hits += int((out.argmax(dim=1) == y.to(device)).sum())
            count += y.shape[0]
    model.train(was)                                                   # restoring the mode is a nice touch
    return loss_sum / count, hits / count


# =========================================================================== checkpoints


def save_model_only(path, model, optimizer, epoch):
    torch.save({"model": model.state_dict(), "optimizer": {}, "epoch": epoch}, path)


def save_whole_objects(path, model, optimizer, epoch):
    torch.save({"model": model, "optimizer": optimizer, "epoch": epoch}, path)


def save_wrong_keys(path, model, optimizer, epoch):
    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "epoch": epoch}, path)


def save_next_epoch(path, model, optimizer, epoch):
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1}, path)


def save_with_suffix(path, model, optimizer, epoch):
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, str(path) + ".pt")


def save_via_file_handle(path, model, optimizer, epoch):
    from pathlib import Path
    with Path(path).open("wb") as f:
        torch.save(dict(epoch=epoch, model=copy.deepcopy(model.state_dict()),
                        optimizer=copy.deepcopy(optimizer.state_dict())), f)


def load_model_only(path, model, optimizer):
    ckpt = torch.load(path, weights_only=True)
    model.load_state_dict(ckpt["model"])
    return ckpt["epoch"]


def load_rebinds(path, model, optimizer):
    ckpt = torch.load(path, weights_only=True)
    model = copy.deepcopy(model)                                       # loads into a copy the caller never sees
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt["epoch"]


def load_returns_next(path, model, optimizer):
    ckpt = torch.load(path, weights_only=True)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt["epoch"] + 1


def load_returns_nothing(path, model, optimizer):
    ckpt = torch.load(path, weights_only=True)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])


def load_map_location(path, model, optimizer):
    state = torch.load(str(path), map_location=torch.device("cpu"))
    optimizer.load_state_dict(state["optimizer"])
    model.load_state_dict(state["model"])
    return int(state["epoch"])


def load_not_weights_only(path, model, optimizer):
    with open(path, "rb") as f:
        ckpt = torch.load(f, weights_only=False)
    model.load_state_dict(ckpt["model"], strict=True)
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt["epoch"]


def load_parameters_only(path, model, optimizer):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    with torch.no_grad():
        for name, p in model.named_parameters():                         # buffers (BatchNorm statistics) missed
            p.copy_(ckpt["model"][name])
    optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["epoch"])


# =========================================================================== CNN


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(128, 10)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return F.max_pool2d(F.relu(self.conv2(x)), 2)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


class CNNChannelsLast(_CNN):
    def forward(self, x):
        return self.fc(self.features(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1))


class CNNAvgPool(_CNN):
    def features(self, x):
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        return F.avg_pool2d(F.relu(self.conv2(x)), 2)


class CNNNoPadding(_CNN):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))                  # 8 -> 6 -> 4
        return self.fc(F.max_pool2d(x, 4).flatten(1))


class CNNMissingRelu(_CNN):
    def features(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return F.max_pool2d(self.conv2(x), 2)


class CNNReluOnLogits(_CNN):
    def forward(self, x):
        return F.relu(super().forward(x))


class CNNSequential(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 2 * 2, 10))

    def forward(self, x):
        return self.net(x)


class CNNSamePadding(_CNN):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding="same")     # the same computation as padding=1
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding="same")


class CNNReflectPadding(_CNN):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, padding_mode="reflect")   # pads with mirrored pixels, not 0
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, padding_mode="reflect")


class CNNReshape(_CNN):
    def forward(self, x):
        h = self.features(x)
        return self.fc(h.reshape(h.size(0), 32 * 2 * 2))


# =========================================================================== RNN


class _RNN(nn.Module):
    def __init__(self, hidden_size=64):
        super().__init__()
        self.hidden_size = hidden_size
        self.input_to_hidden = nn.Linear(8, hidden_size)
        self.hidden_to_hidden = nn.Linear(hidden_size, hidden_size, bias=False)
        self.readout = nn.Linear(hidden_size, 10)

    def rows(self, x):
        return x.reshape(x.shape[0], 8, 8)

    def cell(self, row, h):
        return torch.tanh(self.input_to_hidden(row) + self.hidden_to_hidden(h))

    def forward(self, x):
        rows = self.rows(x)
        h = torch.zeros(x.shape[0], self.hidden_size)
        for t in range(8):
            h = self.cell(rows[:, t], h)
        return self.readout(h)


class RNNColumns(_RNN):
    def rows(self, x):
        return x.reshape(x.shape[0], 8, 8).transpose(1, 2)


class RNNRelu(_RNN):
    def cell(self, row, h):
        return torch.relu(self.input_to_hidden(row) + self.hidden_to_hidden(h))


class RNNFirstState(_RNN):
    def forward(self, x):
        rows = self.rows(x)
        h = torch.zeros(x.shape[0], self.hidden_size)
        states = []
        for t in range(8):
            h = self.cell(rows[:, t], h)
            states.append(h)
        return self.readout(states[0])


class RNNMeanState(_RNN):
    def forward(self, x):
        rows = self.rows(x)
        h = torch.zeros(x.shape[0], self.hidden_size)
        states = []
        for t in range(8):
            h = self.cell(rows[:, t], h)
            states.append(h)
        return self.readout(torch.stack(states).mean(0))


class RNNNoRecurrence(_RNN):
    def cell(self, row, h):
        return torch.tanh(self.input_to_hidden(row))


class RNNBiasedRecurrence(_RNN):
    def __init__(self, hidden_size=64):
        super().__init__(hidden_size)
        self.hidden_to_hidden = nn.Linear(hidden_size, hidden_size)    # a second bias


class RNNHiddenOnCPU(_RNN):
    def forward(self, x):
        rows = self.rows(x)
        h = torch.zeros(x.shape[0], self.hidden_size, dtype=x.dtype)      # on the CPU whatever the model's device
        for t in range(8):
            h = self.cell(rows[:, t], h)
        return self.readout(h)


class RNNHiddenFloat32(_RNN):
    def forward(self, x):
        rows = self.rows(x)
        h = torch.zeros(x.shape[0], self.hidden_size, device=x.device)     # float32 even for a float64 model
        for t in range(8):
            h = self.cell(rows[:, t], h)
        return self.readout(h)


class RNNUnbind(nn.Module):
    def __init__(self, hidden_size=64):
        super().__init__()
        self.input_to_hidden = nn.Linear(8, hidden_size)
        self.hidden_to_hidden = nn.Linear(hidden_size, hidden_size, bias=False)
        self.readout = nn.Linear(hidden_size, 10)

    def forward(self, x):
        seq = x.squeeze(1).unbind(dim=1)                               # 8 tensors of [B, 8]
        h = x.new_zeros(x.shape[0], self.readout.in_features)
        for row in seq:
            h = (self.input_to_hidden(row) + self.hidden_to_hidden(h)).tanh()
        return self.readout(h)


class RNNFunctional(nn.Module):
    def __init__(self, hidden_size=64):
        super().__init__()
        self.input_to_hidden = nn.Linear(8, hidden_size)
        self.hidden_to_hidden = nn.Linear(hidden_size, hidden_size, bias=False)
        self.readout = nn.Linear(hidden_size, 10)

    def forward(self, x):
        b = x.shape[0]
        pre = F.linear(x.reshape(b, 8, 8), self.input_to_hidden.weight, self.input_to_hidden.bias)   # all rows at once
        h = None
        for t in range(8):
            z = pre[:, t] if h is None else pre[:, t] + h @ self.hidden_to_hidden.weight.T
            h = torch.tanh(z)
        return F.linear(h, self.readout.weight, self.readout.bias)


MUTANTS = {
    "input_gradient": [grad_of_loss, grad_of_all_logits, grad_of_probability, grad_mean_over_batch,
                       grad_marks_callers_x, grad_pollutes_params, grad_backward_then_clean, grad_sets_eval],
    "torch_mlp": [MLPReluAtEnd, MLPPlainList, MLPTransposedLayers, MLPNoActivation, MLPSequentialWithReLU],
    "load_numpy_params": [load_not_transposed, load_shares_memory, load_shares_memory_float32, load_forgets_biases,
                          load_new_parameters],
    "torch_grads_as_numpy": [grads_no_zero, grads_not_transposed, grads_sum_loss, grads_double_softmax,
                             grads_torch_keys, grads_share_memory],
    "digits_dataset": [DSLenOffByOne, DSFloat64, DSFloatLabels, DSNoChannel, DSFortranOrder, DSNormalisesInPlace,
                       DSInt32Labels],
    "torch_train_epoch": [train_no_zero_grad, train_no_train_mode, train_returns_last_loss, train_mean_of_batch_means,
                          train_no_step, train_sum_loss, train_forgets_device, train_moves_inputs_only],
    "torch_evaluate": [eval_no_eval_mode, eval_no_no_grad, eval_mean_of_batch_means, eval_counts_correct,
                       eval_argmax_wrong_axis, eval_forgets_device],
    "save_checkpoint": [save_model_only, save_whole_objects, save_wrong_keys, save_next_epoch, save_with_suffix],
    "load_checkpoint": [load_model_only, load_rebinds, load_returns_next, load_returns_nothing, load_parameters_only],
    "digits_cnn": [CNNChannelsLast, CNNAvgPool, CNNNoPadding, CNNMissingRelu, CNNReluOnLogits, CNNReflectPadding],
    "digits_rnn": [RNNColumns, RNNRelu, RNNFirstState, RNNMeanState, RNNNoRecurrence, RNNBiasedRecurrence,
                   RNNHiddenOnCPU, RNNHiddenFloat32],
}

ALTERNATIVES = {
    "input_gradient": [grad_one_hot, grad_backward_inputs_only],
    "torch_mlp": [MLPFunctionalRelu, MLPClamp],
    "load_numpy_params": [load_via_state_dict, load_loop_copy],
    "torch_grads_as_numpy": [grads_autograd, grads_log_softmax],
    "digits_dataset": [DSTensorsUpFront, DSPythonIntLabels],
    "torch_train_epoch": [train_zero_after_step, train_sum_then_divide],
    "torch_evaluate": [eval_inference_mode, eval_weighted],
    "save_checkpoint": [save_via_file_handle],
    "load_checkpoint": [load_map_location, load_not_weights_only],
    "digits_cnn": [CNNSequential, CNNReshape, CNNSamePadding],
    "digits_rnn": [RNNUnbind, RNNFunctional],
}
