"""Folding a periodic polarization difference into the polarization quantum.

In a periodic cell the polarization is defined only modulo the quantum ``e·R/Ω`` for every
lattice vector ``R`` (``docs/theory.md`` §3). A loss on ``P̂ − P`` must therefore first bring the
difference to the branch nearest zero: with the cell rows ``a_k`` and the volume ``Ω``, the
fractional coordinates of the difference are ``f = Ω·d·A⁻¹``; along each periodic direction the
nearest integer is removed, ``d ← d − round(f)·A/Ω``. Non-periodic directions are left unchanged.
Units: ``d`` in e/Å² (e·Å per Å³), ``cell`` in Å.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["fold_polarization"]


def fold_polarization(difference, cell, pbc):
    """Fold ``difference`` [..., 3] into the quantum of ``cell`` [..., 3, 3] along ``pbc`` [..., 3].

    Graphs without any periodic direction (or with a singular cell) are returned unchanged; the
    rounding has zero derivative, so the gradient of a loss on the folded difference is the
    gradient on the raw one.
    """
    d = jnp.asarray(difference)
    cell = jnp.asarray(cell, d.dtype)
    pbc = jnp.asarray(pbc, bool)
    volume = jnp.abs(jnp.linalg.det(cell))
    ok = (volume > 1e-8) & jnp.any(pbc, axis=-1)
    safe_cell = jnp.where(ok[..., None, None], cell, jnp.eye(3, dtype=d.dtype))
    safe_vol = jnp.where(ok, volume, 1.0)
    frac = jnp.einsum("...i,...ij->...j", d * safe_vol[..., None], jnp.linalg.inv(safe_cell))
    shift = jnp.where(pbc & ok[..., None], jnp.round(frac), 0.0)
    return d - jnp.einsum("...k,...kj->...j", shift, safe_cell) / safe_vol[..., None]
