"""Conversions between the *full* (``l`` axes of size 3) and *compressed* (``2l+1`` STF
coordinates in the basis ``Q_l``) layouts, and between rank 2 and ordinary ``3×3`` matrices."""

from __future__ import annotations

import math

import jax.numpy as jnp

from ._stf import stf_basis

__all__ = [
    "to_compressed",
    "to_full",
    "matrix_to_irreps",
    "irreps_to_matrix",
    "LAYOUTS",
    "check_layout",
]

LAYOUTS = ("compressed", "full")


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def _q(l: int, dtype) -> jnp.ndarray:
    return jnp.asarray(stf_basis(l), dtype=dtype)


def to_compressed(x: jnp.ndarray, l: int) -> jnp.ndarray:
    """Full layout ``[..., 3, ..., 3]`` (``l`` axes) → compressed ``[..., 2l+1]``.

    This is ``Q_lᵀ vec(x)``; a non-STF input is projected onto the STF subspace first.
    """
    if l == 0:
        return x[..., None]
    lead = x.shape[: x.ndim - l]
    flat = x.reshape(*lead, 3**l)
    return flat @ _q(l, x.dtype)


def to_full(c: jnp.ndarray, l: int) -> jnp.ndarray:
    """Compressed ``[..., 2l+1]`` → full ``[..., 3, ..., 3]``; rank 0 returns ``[...]``."""
    if c.shape[-1] != 2 * l + 1:
        raise ValueError(f"compressed rank-{l} tensor must end in {2 * l + 1}, got {c.shape}")
    if l == 0:
        return c[..., 0]
    flat = c @ _q(l, c.dtype).T
    return flat.reshape(*c.shape[:-1], *((3,) * l))


def matrix_to_irreps(m: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Split ``[..., 3, 3]`` into its irreducible parts.

    Returns ``(a0, a1, a2)``:

    * ``a0`` ``[...]``: the coefficient on the unit isotropic tensor ``δ/√3`` (``tr M / √3``);
    * ``a1`` ``[..., 3]``: the antisymmetric part as a vector, ``a1_i = ½ ε_ijk M_jk``;
    * ``a2`` ``[..., 5]``: the STF part in compressed coordinates.

    ``irreps_to_matrix`` inverts it exactly.
    """
    tr = jnp.trace(m, axis1=-2, axis2=-1)
    a0 = tr / math.sqrt(3.0)
    anti = 0.5 * (m - jnp.swapaxes(m, -1, -2))
    a1 = jnp.stack([anti[..., 1, 2], anti[..., 2, 0], anti[..., 0, 1]], axis=-1)
    a2 = to_compressed(m, 2)  # Q_2 is orthogonal to trace and antisymmetric parts
    return a0, a1, a2


def irreps_to_matrix(a0: jnp.ndarray, a1: jnp.ndarray | None, a2: jnp.ndarray) -> jnp.ndarray:
    """Assemble ``a0·δ/√3 + ε·a1 + full(a2)``; ``a1`` may be ``None`` (symmetric result)."""
    dtype = a2.dtype
    eye = jnp.eye(3, dtype=dtype)
    out = jnp.asarray(a0, dtype)[..., None, None] * eye / math.sqrt(3.0) + to_full(a2, 2)
    if a1 is not None:
        x, y, z = a1[..., 0], a1[..., 1], a1[..., 2]
        zero = jnp.zeros_like(x)
        anti = jnp.stack(
            [
                jnp.stack([zero, z, -y], -1),
                jnp.stack([-z, zero, x], -1),
                jnp.stack([y, -x, zero], -1),
            ],
            -2,
        )
        out = out + anti
    return out
