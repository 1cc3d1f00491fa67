"""Cartesian harmonics ``Y_l(r̂) = ((2l−1)!!/l!) Π_l(r̂^{⊗l})`` (docs/theory.md §1.4)."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from ._layout import check_layout
from ._safe import safe_normalize
from ._stf import harmonic_norm, stf_basis, stf_projector

__all__ = ["cartesian_harmonics", "outer_powers"]


@functools.cache
def _harmonic_matrix(l: int, layout: str) -> np.ndarray:
    """``n_l Q_l`` (compressed) or ``n_l Π_l`` (full), acting on ``vec(r̂^{⊗l})``."""
    m = stf_basis(l) if layout == "compressed" else stf_projector(l)
    out = harmonic_norm(l) * m
    out.setflags(write=False)
    return out


def outer_powers(u: jnp.ndarray, lmax: int) -> list[jnp.ndarray]:
    """``[vec(u^{⊗l})]`` for ``l = 0..lmax``; shapes ``[..., 3^l]``."""
    lead = u.shape[:-1]
    out = [jnp.ones((*lead, 1), u.dtype)]
    for _ in range(lmax):
        out.append((out[-1][..., :, None] * u[..., None, :]).reshape(*lead, -1))
    return out


def cartesian_harmonics(
    vectors: jnp.ndarray,
    lmax: int,
    layout: str = "compressed",
    normalize: bool = True,
) -> list[jnp.ndarray]:
    """Cartesian harmonics of a batch of vectors, one array per ``l = 0..lmax``.

    Args:
        vectors: ``[..., 3]``. They are normalised as ``r̂ = r/(|r| + 1e-9)`` (the reference
            convention), so the value and the gradient are finite at ``r = 0`` (there ``Y_l = 0``
            for ``l ≥ 1``). Pass ``normalize=False`` for vectors that are already unit.
        lmax: the largest rank.
        layout: ``"compressed"`` gives ``[..., 2l+1]`` (coordinates in ``stf_basis(l)``);
            ``"full"`` gives ``[..., 3, …, 3]`` with ``l`` axes (rank 0 is ``[...]``).

    Returns:
        A list of ``lmax + 1`` arrays, with ``‖Y_l‖² = (2l−1)!!/l!`` for unit ``r̂`` and
        ``Y_l(u)·v^{⊗l} = P_l(u·v)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> [y.shape for y in cartesian_harmonics(jnp.ones((4, 3)), 2)]
        [(4, 1), (4, 3), (4, 5)]
    """
    check_layout(layout)
    if vectors.shape[-1] != 3:
        raise ValueError(f"vectors must end in 3, got shape {vectors.shape}")
    u = safe_normalize(vectors)[0] if normalize else vectors
    lead = u.shape[:-1]
    out = []
    for l, p in enumerate(outer_powers(u, lmax)):
        if l == 0:
            y = p if layout == "compressed" else p[..., 0]
        elif l == 1:
            y = u  # Q_1 = I_3: both layouts hold the xyz components
        else:
            m = jnp.asarray(_harmonic_matrix(l, layout), u.dtype)
            y = p @ m
            if layout == "full":
                y = y.reshape(*lead, *((3,) * l))
        out.append(y)
    return out
