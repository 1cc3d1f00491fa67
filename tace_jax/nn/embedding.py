"""Node embedding ``h⁽⁰⁾_{i,c} = W_{z_i,c}/√Z_n`` (docs/theory.md §2.2): a bias-free linear layer of
the one-hot element vector, rank 0 only. The optional universal invariant embeddings (UIE) of
the reference are not implemented."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from .linear import uniform_sqrt3

__all__ = ["NodeEmbedding"]


class NodeEmbedding(nn.Module):
    """Element embedding.

    Attributes:
        features: channels ``C``.
        param_dtype: storage dtype.

    Call with ``onehot [N, Z_n]`` (in the compute dtype); returns ``[N, 1, C]`` (rank 0,
    channels last). Parameter ``weight [Z_n, C]`` (torch ``node_embedding.mlp.0.weight``).
    """

    features: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, onehot: jnp.ndarray) -> jnp.ndarray:
        z = onehot.shape[-1]
        w = self.param("weight", uniform_sqrt3, (z, self.features), self.param_dtype)
        return (onehot @ (w.astype(onehot.dtype) * (1.0 / math.sqrt(z))))[:, None, :]
