"""Channel-mixing maths shared by the linear modules (docs/theory.md §1.6).

Element-dependent linear maps evaluate every element's weights with one GEMM and then pick each
node's slice (cheap for the few elements of a model, and no per-atom weight gather). Dense
chains (radial MLP, scalar readouts) scale each layer by a fixed ``α_k`` at forward time, which
depends on the init mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["element_select", "element_linear", "mlp_alphas", "mlp_apply"]


def element_select(onehot: jnp.ndarray, y_all: jnp.ndarray) -> jnp.ndarray:
    """``Σ_z onehot[n, z] · y_all[n, ..., z, :]``: pick each node's element slice.

    ``y_all`` is ``[N, ..., Z, D]``; returns ``[N, ..., D]``.
    """
    oh = onehot.reshape(onehot.shape[0], *([1] * (y_all.ndim - 3)), onehot.shape[1], 1)
    return jnp.sum(oh * y_all, axis=-2)


def element_linear(x: jnp.ndarray, w: jnp.ndarray, onehot: jnp.ndarray) -> jnp.ndarray:
    """``y[n, m, d] = Σ_c w[z_n, d, c] x[n, m, c]`` for ``x [N, M, C_in]``, ``w [Z, D, C_in]``.

    Evaluates every element with one GEMM and selects (cheap for the few elements of a model).

    Examples:
        >>> import jax.numpy as jnp
        >>> w = jnp.stack([jnp.eye(2), 2 * jnp.eye(2)])  # [Z=2, D=2, C=2]
        >>> element_linear(jnp.ones((2, 1, 2)), w, jnp.eye(2)).tolist()
        [[[1.0, 1.0]], [[2.0, 2.0]]]
    """
    z, d, c = w.shape
    y_all = (x @ w.reshape(z * d, c).T).reshape(*x.shape[:-1], z, d)
    return element_select(onehot, y_all)


def mlp_alphas(widths: Sequence[int], init: str = "forward") -> list[float]:
    """Forward-time scales ``α_k`` of an MLP with layer widths ``widths = [in, h1, …, out]``.

    * ``"forward"``: ``α_k = g_k/√fan_in_k`` with ``g = 1`` for the first layer, ``√2`` after.
    * ``"backward"``: ``α_k = g_k/√fan_out_k`` with ``g = √2``, except ``g = 1`` for the last
      layer (docs/theory.md §1.6).

    Examples:
        >>> mlp_alphas([4, 16, 1], "backward")
        [0.3535533905932738, 1.0]
    """
    n = len(widths) - 1
    out = []
    for k in range(n):
        fan_in, fan_out = widths[k], widths[k + 1]
        if init == "forward":
            g = 1.0 if k == 0 else math.sqrt(2.0)
            out.append(g / math.sqrt(fan_in))
        elif init == "backward":
            g = 1.0 if k == n - 1 else math.sqrt(2.0)
            out.append(g / math.sqrt(fan_out))
        else:
            raise ValueError(f"init must be 'forward' or 'backward', got {init!r}")
    return out


def mlp_apply(weights: Sequence[jnp.ndarray], x: jnp.ndarray) -> jnp.ndarray:
    """``x ← silu(x W_k)`` for every (already α-scaled) weight but the last, then ``x W_last``."""
    for k, w in enumerate(weights):
        x = x @ w
        if k < len(weights) - 1:
            x = jax.nn.silu(x)
    return x
