"""Norm gates of equivariant features (docs/theory.md §1.6, §2.5).

For ``x [..., 2l+1, C]`` (channels last) with ``n_c = γ_c ‖x_c‖² + β_c``:

* ``"silu"``: ``x_c ← σ(n_c) x_c`` (the NormGate of the readouts);
* ``"tanh"``: ``x_c ← (tanh(n_c)/n_c) x_c``, with factor 0 where ``n_c = 0`` exactly;
* ``"jilu"``: ``x_c ← tanh(n_c) x_c``.

The squared norm over the ``2l+1`` compressed coordinates equals the Frobenius norm of the full
tensor, so every gate is rotation invariant.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["GATES", "vector_gate"]

GATES = ("silu", "tanh", "jilu")


def vector_gate(x: jnp.ndarray, gamma: jnp.ndarray, beta: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Norm gate of ``x [..., 2l+1, C]`` (channels last): channel ``c`` is scaled by
    ``f(γ_c‖x_c‖² + β_c)`` with ``f`` given by ``kind`` (module docstring)."""
    n = gamma * jnp.sum(x * x, axis=-2, keepdims=True) + beta
    if kind == "silu":
        f = jax.nn.sigmoid(n)
    elif kind == "tanh":
        zero = n == 0
        f = jnp.where(zero, 0.0, jnp.tanh(n) / jnp.where(zero, 1.0, n))
    elif kind == "jilu":
        f = jnp.tanh(n)
    else:
        raise ValueError(f"vector_gate: unknown gate {kind!r}; options: {GATES}")
    return f * x
