"""Universal invariant embedding (UIE; docs/theory.md §2.2, docs/theory.md §2.2).

Each embedded property ``p`` becomes a vector ``e_p ∈ ℝ^C`` per atom:

* integer properties (``level``, ``spin_on``, ``spin_multiplicity``): row ``value`` of a table
  ``[num_embeddings, C]`` (an index outside ``[0, num_embeddings)`` gives the zero vector; the
  input assembler rejects such values, a jitted model cannot raise);
* float properties (``charges``, ``total_charge``, ``initial_collinear_magmoms``,
  ``temperature``, ``electron_temperature``): ``e = SiLU(x W₁) W₂`` with ``W₁ [1, C]`` and
  ``W₂ [C, C]``.

The vectors are concatenated in the configured order and projected,
``u_i = SiLU([e_1 ‖ … ‖ e_k] W_p)`` with ``W_p [k·C, C]``. These layers are plain dense layers
(no forward-time ``α``, no bias) initialised like PyTorch's defaults: ``U(±1/√fan_in)`` for the
dense weights and ``N(0, 1)`` for the tables (arXiv 2509.14961).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["UniversalInvariantEmbedding", "INTEGER_UIE", "FLOAT_UIE", "torch_default_dense"]

#: integer-valued UIE properties (embedding tables)
INTEGER_UIE = ("level", "spin_on", "spin_multiplicity")
#: float-valued UIE properties (two-layer MLPs)
FLOAT_UIE = ("charges", "total_charge", "initial_collinear_magmoms", "temperature",
             "electron_temperature")  # fmt: skip

#: ``U(±1/√fan_in)`` for ``[fan_in, fan_out]`` weights (PyTorch's ``Linear`` default)
torch_default_dense = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class UniversalInvariantEmbedding(nn.Module):
    """UIE vector ``u_i [N, C]`` from per-atom property values.

    Attributes:
        features: channels ``C``.
        embeddings: ``(name, num_embeddings)`` per property, in concatenation order;
            ``num_embeddings`` is an ``int`` for integer properties and ``None`` for float ones.
        param_dtype: storage dtype.

    Call with ``values``: name → ``[N]`` array (integers for table properties, floats in the
    compute dtype otherwise; per-graph values already broadcast to atoms) and ``dtype`` (the
    compute dtype). Parameters: ``<name>/table [num_embeddings, C]`` or ``<name>/weight_0
    [1, C]``, ``<name>/weight_1 [C, C]``; ``project [k·C, C]``.
    """

    features: int
    embeddings: Sequence[tuple[str, int | None]]
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, values: Mapping[str, jnp.ndarray], dtype) -> jnp.ndarray:
        c, pd = self.features, self.param_dtype
        parts = []
        for name, num in self.embeddings:
            x = values[name]
            if num is not None:
                table = _Table(num, c, pd, name=name)()
                onehot = jax.nn.one_hot(x.astype(jnp.int32), num, dtype=dtype)
                parts.append(onehot @ table.astype(dtype))
            else:
                w0, w1 = _FloatMLP(c, pd, name=name)()
                h = jax.nn.silu(x.astype(dtype)[:, None] @ w0.astype(dtype))
                parts.append(h @ w1.astype(dtype))
        cat = jnp.concatenate(parts, axis=-1)
        shape = (cat.shape[-1], c)
        w_p = self.param("project", torch_default_dense, shape, pd).astype(dtype)
        return jax.nn.silu(cat @ w_p)


class _Table(nn.Module):
    num: int
    features: int
    param_dtype: Any

    @nn.compact
    def __call__(self):
        shape = (self.num, self.features)
        return self.param("table", nn.initializers.normal(1.0), shape, self.param_dtype)


class _FloatMLP(nn.Module):
    features: int
    param_dtype: Any

    @nn.compact
    def __call__(self):
        c, pd = self.features, self.param_dtype
        w0 = self.param("weight_0", torch_default_dense, (1, c), pd)
        w1 = self.param("weight_1", torch_default_dense, (c, c), pd)
        return w0, w1
