"""Universal equivariant embedding (UEE; docs/theory.md §2.5).

A rank-1 property ``F`` (``electric_field``, ``magnetic_field`` per graph,
``initial_noncollinear_magmoms`` per atom) is injected into the rank-1 A-basis of every layer
``t``, after the self-connection and before the product basis:

  ``A_{i,1,c,a} ← A_{i,1,c,a} + Lin( G( s · F_{i,a} · w_{z_i} · v_c ) )``

with ``s`` the ``normalizer``, ``w [Z_n]`` element weights and ``v [C]`` channel weights (both
initialised to 1), ``G`` an optional norm gate and ``Lin`` an optional ``Linear_1``
(``α = 1/√C``).

Every property is treated as an ordinary (polar) vector, as the reference does: with a physical
magnetic field or magnetic moments (axial vectors) the model is then equivariant under proper
rotations only, not under inversion.

Gates on ``x [N, 3, C]`` with ``n_c = γ_c ‖x_c‖² + β_c`` (``γ`` init 1, ``β`` init 0):

* ``"silu"``: ``x_c ← σ(n_c) x_c``;
* ``"tanh"``: ``x_c ← (tanh(n_c)/n_c) x_c``, with factor 0 where ``n_c = 0`` exactly;
* ``"jilu"``: ``x_c ← tanh(n_c) x_c``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tace_jax.ops import GATES, vector_gate

from .linear import Linear

__all__ = ["UniversalEquivariantEmbedding", "UEE_PROPERTIES", "UEE_GATES"]

UEE_PROPERTIES = ("electric_field", "magnetic_field", "initial_noncollinear_magmoms")
UEE_GATES = (None, *GATES)


class UniversalEquivariantEmbedding(nn.Module):
    """The rank-1 term of one property in one layer, ``[N, 3, C]``.

    Attributes:
        features: channels ``C`` (those of the A-basis).
        num_elements: ``Z_n``.
        normalizer: ``s``.
        gate: ``None`` or one of ``"silu"``, ``"tanh"``, ``"jilu"``.
        linear: apply ``Linear_1(C→C)`` after the gate.
        param_dtype: storage dtype.

    Call with ``vec [N, 3]`` (the property per atom, per-graph values broadcast) and ``onehot
    [N, Z_n]``. Parameters: ``element_weights [Z_n]``, ``channel_weights [C]``,
    ``gate_weight``/``gate_bias [C]`` (with a gate), ``linear/weight [C, C]``.
    """

    features: int
    num_elements: int
    normalizer: float = 1.0
    gate: str | None = None
    linear: bool = False
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, vec: jnp.ndarray, onehot: jnp.ndarray) -> jnp.ndarray:
        c, pd, dtype = self.features, self.param_dtype, vec.dtype
        ones = nn.initializers.ones
        w = self.param("element_weights", ones, (self.num_elements,), pd).astype(dtype)
        v = self.param("channel_weights", ones, (c,), pd).astype(dtype)
        x = (self.normalizer * vec * (onehot @ w)[:, None])[:, :, None] * v  # [N, 3, C]
        if self.gate is not None:
            gamma = self.param("gate_weight", ones, (c,), pd).astype(dtype)
            beta = self.param("gate_bias", nn.initializers.zeros, (c,), pd).astype(dtype)
            x = vector_gate(x, gamma, beta, self.gate)
        if self.linear:
            x = Linear(c, param_dtype=pd, name="linear")(x)
        return x
