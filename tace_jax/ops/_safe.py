"""NaN-safe norms: finite values and gradients at the origin."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["safe_norm", "safe_normalize"]


def safe_norm(x: jnp.ndarray, axis: int = -1, keepdims: bool = False) -> jnp.ndarray:
    """Euclidean norm whose gradient is 0 (not NaN) at ``x = 0`` (double-``where`` pattern)."""
    sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def safe_normalize(x: jnp.ndarray, eps: float = 1e-9) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return ``(x / (|x| + eps), |x| + eps)``, the reference TACE convention for edge vectors."""
    r = safe_norm(x, axis=-1, keepdims=True) + eps
    return x / r, r[..., 0]
