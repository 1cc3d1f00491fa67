"""Equivariant linear maps with TACE's forward-time scaling (TACE_SPEC §1.6, §2.11).

Weights are stored *unscaled*, drawn from ``U(−√3, √3)`` (unit variance), and multiplied by a
fixed ``α`` at forward time, exactly as the reference, so reference weights import 1:1.
Inside the model a rank-``l`` feature is stored **channels last**, ``[..., 2l+1, C]`` (the
``2l+1`` compressed STF coordinates, then channels): channel mixing is then a plain matmul and the
channel-diagonal couplings vectorise over channels. The linear maps act on the channel axis only,
so they commute with rotations. Biases exist only for rank 0.

Parameters are created in ``param_dtype`` and cast to the dtype of the input at use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "uniform_sqrt3",
    "Linear",
    "ElementLinear",
    "MLP",
    "DenseWeights",
    "mlp_alphas",
    "mlp_apply",
    "element_select",
    "element_linear",
]


def uniform_sqrt3(key, shape, dtype=jnp.float32):
    """``U(−√3, √3)``: unit-variance uniform initialiser (TACE's default)."""
    s = math.sqrt(3.0)
    return jax.random.uniform(key, shape, dtype, -s, s)


def element_select(onehot: jnp.ndarray, y_all: jnp.ndarray) -> jnp.ndarray:
    """``Σ_z onehot[n, z] · y_all[n, ..., z, :]``: pick each node's element slice.

    ``y_all`` is ``[N, ..., Z, D]``; returns ``[N, ..., D]``.
    """
    oh = onehot.reshape(onehot.shape[0], *([1] * (y_all.ndim - 3)), onehot.shape[1], 1)
    return jnp.sum(oh * y_all, axis=-2)


def element_linear(x: jnp.ndarray, w: jnp.ndarray, onehot: jnp.ndarray) -> jnp.ndarray:
    """``y[n, m, d] = Σ_c w[z_n, d, c] x[n, m, c]`` for ``x [N, M, C_in]``, ``w [Z, D, C_in]``.

    Evaluates every element with one GEMM and selects (cheap for the few elements of a model).
    """
    z, d, c = w.shape
    y_all = (x @ w.reshape(z * d, c).T).reshape(*x.shape[:-1], z, d)
    return element_select(onehot, y_all)


class Linear(nn.Module):
    """``Linear_l``: ``y_{d,…} = α Σ_c W_{cd} x_{c,…} (+ b_d for rank 0)``, ``α = 1/√C_in``.

    Attributes:
        features: output channels.
        use_bias: add a bias (only meaningful for rank 0).
        param_dtype: storage dtype of the parameters.

    Input ``x``: ``[..., 2l+1, C_in]``; output ``[..., 2l+1, features]``. Parameters:
    ``weight [C_in, features]`` (torch layout), ``bias [features]``.
    """

    features: int
    use_bias: bool = False
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c_in = x.shape[-1]
        w = self.param("weight", uniform_sqrt3, (c_in, self.features), self.param_dtype)
        y = x @ (w.astype(x.dtype) * (1.0 / math.sqrt(c_in)))
        if self.use_bias:
            if x.shape[-2] != 1:
                raise ValueError(f"Linear: a bias is only allowed for rank 0, got {x.shape}")
            b = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            y = y + b.astype(x.dtype)
        return y


class ElementLinear(nn.Module):
    """``ElementLinear_l``: ``y_{i,d} = α Σ_c W_{z_i,d,c} x_{i,c} (+ b_{z_i,d})``, ``α = 1/√C_in``.

    Attributes:
        features: output channels.
        num_elements: ``Z_n``.
        use_bias: per-element bias (rank 0 only).
        param_dtype: storage dtype.

    Call with ``x [N, 2l+1, C_in]`` and ``onehot [N, Z_n]``. Parameters: ``weights
    [Z_n, features, C_in]`` (torch layout), ``bias [Z_n, features]``. All elements are evaluated
    and the node's own slice selected (cheap for small ``Z_n``; avoids gathering weights per atom).
    """

    features: int
    num_elements: int
    use_bias: bool = False
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, onehot: jnp.ndarray) -> jnp.ndarray:
        c_in = x.shape[-1]
        shape = (self.num_elements, self.features, c_in)
        w = self.param("weights", uniform_sqrt3, shape, self.param_dtype)
        w = w.astype(x.dtype) * (1.0 / math.sqrt(c_in))
        y = element_linear(x, w, onehot)
        if self.use_bias:
            if x.shape[-2] != 1:
                raise ValueError(f"ElementLinear: a bias is only allowed for rank 0, got {x.shape}")
            shape_b = (self.num_elements, self.features)
            b = self.param("bias", nn.initializers.zeros, shape_b, self.param_dtype)
            y = y + (onehot @ b.astype(x.dtype))[:, None, :]
        return y


def mlp_alphas(widths: Sequence[int], init: str = "forward") -> list[float]:
    """Forward-time scales ``α_k`` of an MLP with layer widths ``widths = [in, h1, …, out]``.

    * ``"forward"``: ``α_k = g_k/√fan_in_k`` with ``g = 1`` for the first layer, ``√2`` after.
    * ``"backward"``: ``α_k = g_k/√fan_out_k`` with ``g = √2``, except ``g = 1`` for the last
      layer (TACE_SPEC §1.6).
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


class DenseWeights(nn.Module):
    """The weights ``weight_k [fan_in, fan_out]`` of a dense chain, returned α-scaled.

    Used where the chain runs inside ``lax.scan`` (the radial MLP over edge chunks).

    Attributes:
        widths: ``[in, h1, …, out]``.
        init_mode: ``"forward"`` or ``"backward"`` (see :func:`mlp_alphas`).
        param_dtype: storage dtype.
    """

    widths: Sequence[int]
    init_mode: str = "forward"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, dtype) -> list[jnp.ndarray]:
        ws = []
        for k, a in enumerate(mlp_alphas(self.widths, self.init_mode)):
            shape = (self.widths[k], self.widths[k + 1])
            w = self.param(f"weight_{k}", uniform_sqrt3, shape, self.param_dtype)
            ws.append(w.astype(dtype) * a)
        return ws


class MLP(nn.Module):
    """Dense chain ``x ← act(α_k x W_k)`` (no activation after the last layer), no bias.

    Attributes:
        features: widths of every layer (hidden ones and the output).
        init_mode: ``"forward"`` or ``"backward"`` α scaling (see :func:`mlp_alphas`).
        param_dtype: storage dtype.

    Parameters ``weight_k [fan_in, fan_out]`` (torch ``mlp.{2k}.weight``).
    """

    features: Sequence[int]
    init_mode: str = "forward"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        widths = [x.shape[-1], *self.features]
        alphas = mlp_alphas(widths, self.init_mode)
        ws = []
        for k, a in enumerate(alphas):
            w = self.param(
                f"weight_{k}", uniform_sqrt3, (widths[k], widths[k + 1]), self.param_dtype
            )
            ws.append(w.astype(x.dtype) * a)
        return mlp_apply(ws, x)
