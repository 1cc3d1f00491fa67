"""Per-layer readouts (docs/theory.md §2.8).

* Scalar readout of ``h_{i,0}``: a single ``Dense(C→M)`` (``α = 1/√C``) for intermediate
  layers; ``Dense(C→16M) → SiLU → Dense(16M→M)`` with *backward* init for the last layer.
* Tensor readout of rank ``l > 0``: ``Linear_l(C→M)``; last layer ``Linear_l(C→16M) →
  NormGate_l → Linear_l(16M→M)``.
* Multi-head (``M`` fidelity levels): the last readout keeps only the hidden block of the atom's
  level, and every atom takes its level's output column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tace_jax.ops import mlp_alphas

from .gate import NormGate
from .linear import Linear, uniform_sqrt3

__all__ = ["ScalarReadout", "TensorReadout"]


def _head_mask(level_onehot: jnp.ndarray | None, width: int, num_heads: int) -> jnp.ndarray | None:
    """``[N, width·M]`` mask keeping the ``width`` hidden units of each atom's level."""
    if num_heads == 1 or level_onehot is None:
        return None
    return jnp.repeat(level_onehot, width, axis=-1)


def _pick_head(y: jnp.ndarray, level_onehot: jnp.ndarray | None, num_heads: int) -> jnp.ndarray:
    """``y [N, M, ...] → [N, ...]`` at each atom's level (column 0 when ``M = 1``)."""
    if num_heads == 1 or level_onehot is None:
        return y[:, 0]
    return jnp.einsum("nm,nm...->n...", level_onehot, y)


class ScalarReadout(nn.Module):
    """Invariant readout ``[N, C] → [N]``.

    Attributes:
        hidden: hidden widths (``()`` for the linear intermediate readouts).
        num_heads: ``M`` (multi-head readouts), 1 otherwise.
        param_dtype: storage dtype.

    Parameters ``weight_k [fan_in, fan_out]`` (torch ``mlp.{2k}.weight``).
    """

    hidden: Sequence[int] = ()
    num_heads: int = 1
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, level_onehot: jnp.ndarray | None = None) -> jnp.ndarray:
        m = self.num_heads
        widths = [x.shape[-1], *(w * m for w in self.hidden), m]
        alphas = mlp_alphas(widths, "backward" if self.hidden else "forward")
        for k, a in enumerate(alphas):
            shape = (widths[k], widths[k + 1])
            w = self.param(f"weight_{k}", uniform_sqrt3, shape, self.param_dtype)
            x = x @ (w.astype(x.dtype) * a)
            if k < len(alphas) - 1:
                x = jax.nn.silu(x)
                mask = _head_mask(level_onehot, self.hidden[k], m)
                if mask is not None:
                    x = x * mask
        return _pick_head(x, level_onehot, m)


class TensorReadout(nn.Module):
    """Equivariant rank-``l`` readout ``[N, 2l+1, C] → [N, 2l+1]`` (channels last).

    Attributes:
        hidden: hidden widths (``()``: a single ``Linear_l``).
        num_heads: ``M``.
        param_dtype: storage dtype.

    Parameters ``linear_k`` (``weight [fan_in, fan_out]``, ``α = 1/√fan_in``) and ``gate_k``.
    """

    hidden: Sequence[int] = ()
    num_heads: int = 1
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, level_onehot: jnp.ndarray | None = None) -> jnp.ndarray:
        m = self.num_heads
        widths = [*(w * m for w in self.hidden), m]
        for k, width in enumerate(widths):
            x = Linear(width, param_dtype=self.param_dtype, name=f"linear_{k}")(x)
            if k < len(widths) - 1:
                x = NormGate(self.param_dtype, name=f"gate_{k}")(x)
                mask = _head_mask(level_onehot, self.hidden[k], m)
                if mask is not None:
                    x = x * mask[:, None, :]
        return _pick_head(jnp.moveaxis(x, -1, 1), level_onehot, m)
