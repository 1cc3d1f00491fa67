"""Radial edge features: ``j0`` Bessel basis times a polynomial envelope (docs/theory.md §2.3).

``e(r) = b(r)·f(r/r_c)`` with ``b_n(r) = √(2/r_c)·sin(nπr/r_c)/r`` (``n = 1..num_basis``) and
the DimeNet envelope ``f(x) = 1 − ((p+1)(p+2)/2)x^p + p(p+2)x^{p+1} − (p(p+1)/2)x^{p+2}`` for
``x < 1`` and 0 beyond. ``r`` is the reference edge length ``‖r_e‖ + 1e-9``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

__all__ = ["bessel_basis", "polynomial_envelope", "radial_features"]


def bessel_basis(r: jnp.ndarray, cutoff: float, num_basis: int) -> jnp.ndarray:
    """``√(2/r_c)·sin(nπr/r_c)/r``, shape ``[..., num_basis]``; ``r`` must be > 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> bessel_basis(jnp.array([1.0, 2.0]), 5.0, 8).shape
        (2, 8)
    """
    w = jnp.arange(1, num_basis + 1, dtype=r.dtype) * (math.pi / cutoff)
    return math.sqrt(2.0 / cutoff) * jnp.sin(w * r[..., None]) / r[..., None]


def polynomial_envelope(x: jnp.ndarray, p: int) -> jnp.ndarray:
    """DimeNet polynomial envelope of ``x = r/r_max``; exactly 0 for ``x ≥ 1``.

    Smooth up to order ``p`` at ``x = 1``; ``f(0) = 1``.

    Examples:
        >>> import jax.numpy as jnp
        >>> polynomial_envelope(jnp.array([0.0, 1.0, 2.0]), 5).tolist()
        [1.0, 0.0, 0.0]
    """
    c1 = (p + 1.0) * (p + 2.0) / 2.0
    c2 = p * (p + 2.0)
    c3 = p * (p + 1.0) / 2.0
    xp = x**p
    f = 1.0 - c1 * xp + c2 * xp * x - c3 * xp * x * x
    return jnp.where(x < 1.0, f, 0.0)


def radial_features(r: jnp.ndarray, cutoff: float, num_basis: int, p: int) -> jnp.ndarray:
    """Edge features ``e = b(r)·f(r/r_c)``, ``[E, num_basis]``."""
    return bessel_basis(r, cutoff, num_basis) * polynomial_envelope(r / cutoff, p)[..., None]
