"""NormGate (docs/theory.md §1.6): SiLU on scalars; ``σ(w_c‖t_c‖² + b_c)·t_c`` on rank ``l > 0``.

The squared Frobenius norm over all ``3^l`` entries equals the squared norm of the ``2l+1``
compressed coordinates (``Q_l`` is an isometry), so the gate is layout independent and
rotation invariant.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tace_jax.ops import vector_gate

__all__ = ["NormGate"]


class NormGate(nn.Module):
    """Self-norm gate for one rank.

    Attributes:
        param_dtype: storage dtype of ``w`` (init 1) and ``b`` (init 0), one per channel.

    Call with ``x [..., 2l+1, C]`` (channels last); rank 0 (``2l+1 = 1``) gets plain SiLU and
    has no parameters.
    """

    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if x.shape[-2] == 1:
            return jax.nn.silu(x)
        c = x.shape[-1]
        w = self.param("weight", nn.initializers.ones, (c,), self.param_dtype).astype(x.dtype)
        b = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype).astype(x.dtype)
        return vector_gate(x, w, b, "silu")
