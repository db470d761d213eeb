"""Mutants and alternatives for chapter 02_calculus_optimization."""
from __future__ import annotations

import numpy as np

from safety_roadmap.reference import calculus_optimization as ref
from safety_roadmap.reference.calculus_optimization import numerical_gradient as _ref_numerical_gradient

# --------------------------------------------------------------------------- mutants


def numgrad_forward(f, x, h=1e-5):
    x = np.array(x, dtype=float)
    fx = f(x)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp = x.copy()
        xp[i] += h
        g[i] = (f(xp) - fx) / h
    return g


def numgrad_divides_by_h(f, x, h=1e-5):
    x = np.array(x, dtype=float)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / h
    return g


def numgrad_own_dtype(f, x, h=1e-5):
    g = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()  # int stays int (x + h truncates back), float32 loses the step
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


def numgrad_perturbs_input(f, x, h=1e-5):
    g = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        x[i] += h  # writes into the caller's array, and += h, -= 2h, += h need not restore it exactly
        fp = f(x)
        x[i] -= 2 * h
        fm = f(x)
        x[i] += h
        g[i] = (fp - fm) / (2 * h)
    return g


def jac_transposed(f, x, h=1e-5):
    x = np.array(x, dtype=float)
    rows = [(np.asarray(f(x + h * e)) - np.asarray(f(x - h * e))) / (2 * h) for e in np.eye(len(x))]
    return np.array(rows)  # row j holds d f / d x_j: that is J.T


def jac_forward(f, x, h=1e-5):
    x = np.array(x, dtype=float)
    fx = np.asarray(f(x))
    return np.stack([(np.asarray(f(x + h * e)) - fx) / h for e in np.eye(len(x))], axis=1)


def neuron_wrong_variable(w, b, x, y):
    a = np.tanh(x @ w + b)
    dz = 2 * (a - y) * (1 - a ** 2) / len(y)
    return float(np.mean((a - y) ** 2)), np.sum(dz[:, None] * w, axis=0), float(dz.sum())  # d(x.w)/dw taken as w


def neuron_no_tanh_derivative(w, b, x, y):
    a = np.tanh(x @ w + b)
    dz = 2 * (a - y) / len(y)
    return float(np.mean((a - y) ** 2)), x.T @ dz, float(dz.sum())


def neuron_tanh_of_z(w, b, x, y):
    z = x @ w + b
    a = np.tanh(z)
    dz = 2 * (a - y) * (1 - z ** 2) / len(y)
    return float(np.mean((a - y) ** 2)), x.T @ dz, float(dz.sum())


def neuron_sum_not_mean(w, b, x, y):
    a = np.tanh(x @ w + b)
    dz = 2 * (a - y) * (1 - a ** 2)
    return float(np.mean((a - y) ** 2)), x.T @ dz, float(dz.sum())


def check_absolute(f, grad_f, x, h=1e-5):
    return float(np.max(np.abs(grad_f(x) - _ref_numerical_gradient(f, x, h))))


def check_no_floor(f, grad_f, x, h=1e-5):
    a, n = np.asarray(grad_f(x), dtype=float), _ref_numerical_gradient(f, x, h)
    with np.errstate(invalid="ignore"):
        return float(np.max(np.abs(a - n) / (np.abs(a) + np.abs(n))))


def check_mean(f, grad_f, x, h=1e-5):
    a, n = np.asarray(grad_f(x), dtype=float), _ref_numerical_gradient(f, x, h)
    return float(np.mean(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-8)))


def gd_ascent(grad_fn, x0, lr, num_steps):
    path = [np.array(x0, dtype=float)]
    for _ in range(num_steps):
        path.append(path[-1] + lr * grad_fn(path[-1]))
    return np.array(path)


def gd_missing_start(grad_fn, x0, lr, num_steps):
    x, path = np.array(x0, dtype=float), []
    for _ in range(num_steps):
        x = x - lr * grad_fn(x)
        path.append(x)
    return np.array(path).reshape(num_steps, -1)


def gd_aliased(grad_fn, x0, lr, num_steps):
    x = np.array(x0, dtype=float)
    path = [x]
    for _ in range(num_steps):
        x -= lr * grad_fn(x)
        path.append(x)  # the same array every time
    return np.array(path)


def gd_in_place_on_x0(grad_fn, x0, lr, num_steps):
    path = [x0.copy()]
    for _ in range(num_steps):
        x0 -= lr * grad_fn(x0)  # modifies the caller's array (and fails on integers)
        path.append(x0.copy())
    return np.array(path, dtype=float)


def lr_one_over(H):
    return 1.0 / np.linalg.eigvalsh(H).max()


def lr_smallest_eigenvalue(H):
    return 2.0 / np.linalg.eigvalsh(H).min()


def lr_diagonal(H):
    return 2.0 / np.diag(H).max()


def rosen_no_inner(p, a=1.0, b=100.0):
    x, y = p[..., 0], p[..., 1]
    return np.stack([-2 * (a - x) + 2 * b * (y - x ** 2), 2 * b * (y - x ** 2)], axis=-1)


def rosen_swapped(p, a=1.0, b=100.0):
    x, y = p[..., 0], p[..., 1]
    return np.stack([2 * b * (y - x ** 2), -2 * (a - x) - 4 * b * x * (y - x ** 2)], axis=-1)


def rosen_hardcoded(p, a=1.0, b=100.0):
    x, y = p[..., 0], p[..., 1]
    return np.stack([-2 * (1 - x) - 400 * x * (y - x ** 2), 200 * (y - x ** 2)], axis=-1)


def rosen_sign(p, a=1.0, b=100.0):
    x, y = p[..., 0], p[..., 1]
    return np.stack([2 * (a - x) - 4 * b * x * (y - x ** 2), 2 * b * (y - x ** 2)], axis=-1)


def momentum_stale_velocity(grad_fn, x0, lr, beta, num_steps):
    x = np.array(x0, dtype=float)
    v = np.zeros_like(x)
    path = [x]
    for _ in range(num_steps):
        x = x - lr * v  # moves with last step's velocity
        v = beta * v + grad_fn(path[-1])
        path.append(x)
    return np.array(path)


def momentum_ema(grad_fn, x0, lr, beta, num_steps):
    x = np.array(x0, dtype=float)
    v = np.zeros_like(x)
    path = [x]
    for _ in range(num_steps):
        v = beta * v + (1 - beta) * grad_fn(x)
        x = x - lr * v
        path.append(x)
    return np.array(path)


def momentum_velocity_reset(grad_fn, x0, lr, beta, num_steps):
    x = np.array(x0, dtype=float)
    path = [x]
    for _ in range(num_steps):
        v = np.zeros_like(x)  # reset every step
        v = beta * v + grad_fn(x)
        x = x - lr * v
        path.append(x)
    return np.array(path)


def momentum_grad_after_move(grad_fn, x0, lr, beta, num_steps):
    x = np.array(x0, dtype=float)
    v = np.zeros_like(x)
    path = [x]
    for _ in range(num_steps):
        x = x - lr * v
        v = beta * v + grad_fn(x)  # gradient at the new point, applied one step late
        path.append(x)
    return np.array(path)


def check_ignores_h(f, grad_f, x, h=1e-5):
    x = np.array(x, dtype=np.float64)
    a = np.asarray(grad_f(x.copy()), dtype=np.float64)
    n = ref.numerical_gradient(f, x)  # always the default step
    return float((np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-8)).max())


def jac_ignores_h(f, x, h=1e-5):
    x = np.array(x, dtype=np.float64)
    cols = [(np.asarray(f(x + 1e-5 * e), float) - np.asarray(f(x - 1e-5 * e), float)) / 2e-5 for e in np.eye(len(x))]
    return np.stack(cols, axis=1)


def rosen_b_only_default(p, a=1.0, b=100.0):
    x, y = p[..., 0], p[..., 1]
    return np.stack([-2 * (a - x) - 400 * x * (y - x ** 2), 200 * (y - x ** 2)], axis=-1)  # b hard-coded


MUTANTS = {
    "numerical_gradient": [numgrad_forward, numgrad_divides_by_h, numgrad_own_dtype, numgrad_perturbs_input],
    "numerical_jacobian": [jac_transposed, jac_forward, jac_ignores_h],
    "neuron_backward": [neuron_wrong_variable, neuron_no_tanh_derivative, neuron_tanh_of_z, neuron_sum_not_mean],
    "gradient_check": [check_absolute, check_no_floor, check_mean, check_ignores_h],
    "gradient_descent": [gd_ascent, gd_missing_start, gd_aliased, gd_in_place_on_x0],
    "max_stable_learning_rate": [lr_one_over, lr_smallest_eigenvalue, lr_diagonal],
    "rosenbrock_grad": [rosen_no_inner, rosen_swapped, rosen_hardcoded, rosen_sign, rosen_b_only_default],
    "momentum_descent": [momentum_stale_velocity, momentum_ema, momentum_velocity_reset, momentum_grad_after_move],
}

# --------------------------------------------------------------------------- correct alternatives


def numgrad_basis_vectors(f, x, h=1e-5):
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1)
    out = []
    for e in np.eye(flat.size):
        out.append((f((flat + h * e).reshape(x.shape)) - f((flat - h * e).reshape(x.shape))) / (2 * h))
    return np.array(out).reshape(x.shape)


def numgrad_restore_saved(f, x, h=1e-5):
    x = x.astype(np.float64)  # astype copies
    grad = np.empty_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        saved = x[i]
        x[i] = saved + h
        up = f(x)
        x[i] = saved - h
        down = f(x)
        x[i] = saved
        grad[i] = (up - down) / (2 * h)
    return grad


def jac_rows_then_transpose(f, x, h=1e-5):
    x = np.array(x, dtype=float)
    cols = np.array([(np.asarray(f(x + h * e)) - np.asarray(f(x - h * e))) / (2 * h) for e in np.eye(len(x))])
    return cols.T


def jac_fill_matrix(f, x, h=1e-5):
    x = np.array(x, dtype=float)
    m = np.asarray(f(x)).size
    J = np.empty((m, x.size))
    for j in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp[j] += h
        xm[j] -= h
        J[:, j] = (np.asarray(f(xp)) - np.asarray(f(xm))).reshape(-1) / (2 * h)
    return J


def neuron_step_by_step(w, b, x, y):
    B = x.shape[0]
    loss, gw, gb = 0.0, np.zeros(w.shape), 0.0
    for i in range(B):  # one example at a time, as a computation graph
        z = float(x[i] @ w) + b
        a = np.tanh(z)
        loss += (a - y[i]) ** 2 / B
        upstream = 2 * (a - y[i]) / B
        dz = upstream / np.cosh(z) ** 2  # tanh' = sech^2
        gw += dz * x[i]
        gb += dz
    return loss, gw, gb


def check_loop(f, grad_f, x, h=1e-5):
    analytic = np.asarray(grad_f(np.array(x, dtype=float)), dtype=float).ravel()
    numeric = numgrad_restore_saved(f, np.asarray(x), h).ravel()
    worst = 0.0
    for a, n in zip(analytic, numeric):
        denom = max(abs(a) + abs(n), 1e-8)
        worst = max(worst, abs(a - n) / denom)
    return worst


def gd_preallocated(grad_fn, x0, lr, num_steps):
    path = np.empty((num_steps + 1, np.size(x0)))
    path[0] = x0
    for t in range(num_steps):
        path[t + 1] = path[t] - lr * grad_fn(path[t])
    return path


def lr_power_iteration(H):
    v = np.ones(H.shape[0]) / np.sqrt(H.shape[0]) + np.arange(H.shape[0]) * 1e-3
    for _ in range(2000):
        v = H @ v
        v /= np.linalg.norm(v)
    return 2.0 / float(v @ H @ v)


def lr_from_eig(H):
    return 2 / max(abs(np.linalg.eig(H)[0]))


def rosen_expanded(p, a=1.0, b=100.0):
    p = np.asarray(p, dtype=float)
    x, y = p[..., 0], p[..., 1]
    out = np.empty(p.shape)
    out[..., 0] = 2 * x - 2 * a + 4 * b * x ** 3 - 4 * b * x * y
    out[..., 1] = 2 * b * y - 2 * b * x ** 2
    return out


def momentum_lr_in_velocity(grad_fn, x0, lr, beta, num_steps):
    x = np.array(x0, dtype=float)
    step = np.zeros_like(x)
    path = [x.copy()]
    for _ in range(num_steps):
        step = beta * step - lr * grad_fn(x)  # equivalent when lr is constant
        x = x + step
        path.append(x.copy())
    return np.array(path).reshape(num_steps + 1, -1)


ALTERNATIVES = {
    "numerical_gradient": [numgrad_basis_vectors, numgrad_restore_saved],
    "numerical_jacobian": [jac_rows_then_transpose, jac_fill_matrix],
    "neuron_backward": [neuron_step_by_step],
    "gradient_check": [check_loop],
    "gradient_descent": [gd_preallocated],
    "max_stable_learning_rate": [lr_power_iteration, lr_from_eig],
    "rosenbrock_grad": [rosen_expanded],
    "momentum_descent": [momentum_lr_in_velocity],
}
