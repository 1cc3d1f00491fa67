"""Equivariant linear maps with TACE's forward-time scaling (docs/theory.md §1.6, §2.11).

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

from tace_jax.ops import element_linear, mlp_alphas

__all__ = ["uniform_sqrt3", "Linear", "ElementLinear", "DenseWeights"]


def uniform_sqrt3(key, shape, dtype=jnp.float32):
    """``U(−√3, √3)``: unit-variance uniform initialiser (TACE's default)."""
    s = math.sqrt(3.0)
    return jax.random.uniform(key, shape, dtype, -s, s)


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


class DenseWeights(nn.Module):
    """The weights ``weight_k [fan_in, fan_out]`` of a dense chain, returned α-scaled.

    Used where the chain runs inside ``lax.scan`` (the radial MLP over edge chunks); apply the
    returned list with :func:`tace_jax.ops.mlp_apply`.

    Attributes:
        widths: ``[in, h1, …, out]``.
        init_mode: ``"forward"`` or ``"backward"`` (see :func:`tace_jax.ops.mlp_alphas`).
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
