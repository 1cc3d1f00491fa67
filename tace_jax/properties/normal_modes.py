"""Normal modes of a Cartesian Hessian (numpy), shared by ``tace_jax.vib`` and the harmonic
spectra of ``tace_jax.spectra``.

The mass-weighted Hessian ``H̃ = M^{-1/2} H M^{-1/2}`` is diagonalised in the complement of the
rigid-body motions (three translations; for non-periodic structures also the rotations, two for
a linear molecule). Eigenvalues ``λ = ω²`` in eV/(Å²·amu) give ``ħω = ħ·sqrt(λ·e/(Å²·amu))`` eV
and the wavenumber ``ν̃ = ħω / units.invcm`` cm⁻¹, the ``ase.vibrations`` convention; imaginary
modes are reported as negative wavenumbers.

Normal coordinates ``Q_k`` are in Å·√amu: moving along mode ``k`` by ``dQ`` displaces atom
``i`` by ``dx_i = e_{k,i} / √m_i · dQ`` with ``e_k`` the orthonormal eigenvector of ``H̃``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import units

__all__ = ["NormalModes", "normal_modes", "rigid_body_basis", "EV_PER_SQRT_LAMBDA"]

#: ħω (eV) = EV_PER_SQRT_LAMBDA · sqrt(λ) for λ in eV/(Å²·amu).
EV_PER_SQRT_LAMBDA = units._hbar * 1e10 / np.sqrt(units._e * units._amu)


@dataclasses.dataclass(frozen=True)
class NormalModes:
    """Normal modes of one structure.

    Attributes:
        frequencies: ``[K]`` cm⁻¹, ascending; imaginary modes negative.
        mass_weighted_modes: ``[K, 3N]`` orthonormal eigenvectors ``e_k`` of ``H̃``.
        masses: ``[N]`` amu.
        eigenvalues: ``[K]`` eigenvalues ``λ`` of the mass-weighted Hessian, eV/(Å²·amu)
            (``None`` for modes given from elsewhere).
        num_projected: number of rigid-body motions projected out.
    """

    frequencies: np.ndarray
    mass_weighted_modes: np.ndarray
    masses: np.ndarray
    eigenvalues: np.ndarray | None = None
    num_projected: int = 0

    @property
    def displacements(self) -> np.ndarray:
        """``[K, N, 3]`` ``∂x/∂Q_k = e_k / √m`` (Å per Å·√amu)."""
        inv_sq = 1.0 / np.sqrt(np.repeat(self.masses, 3))
        k = self.mass_weighted_modes.shape[0]
        return (self.mass_weighted_modes * inv_sq[None, :]).reshape(k, -1, 3)


def _hessian_3n(hessian, n: int) -> np.ndarray:
    h = np.asarray(hessian, np.float64)
    if h.size != (3 * n) ** 2 or h.ndim not in (2, 4):
        raise ValueError(
            f"hessian must be [n,3,n,3] or [3n,3n] eV/Å² with n = {n} atoms, got shape {h.shape}"
        )
    if h.ndim == 4 and h.shape != (n, 3, n, 3):
        raise ValueError(f"hessian must be [{n},3,{n},3], got shape {h.shape}")
    h = h.reshape(3 * n, 3 * n)
    if not np.isfinite(h).all():
        raise ValueError("hessian has non-finite entries")
    return 0.5 * (h + h.T)


def rigid_body_basis(positions, masses, periodic: bool) -> np.ndarray:
    """Orthonormal mass-weighted translations (and rotations unless periodic), ``[3N, k]``."""
    m = np.asarray(masses, np.float64)
    n = len(m)
    sq = np.sqrt(m)
    cols = []
    for a in range(3):
        t = np.zeros((n, 3))
        t[:, a] = sq
        cols.append(t.ravel())
    if not periodic and n > 1:
        pos = np.asarray(positions, np.float64)
        r = pos - (m[:, None] * pos).sum(0) / m.sum()
        for a in range(3):
            cols.append((sq[:, None] * np.cross(np.eye(3)[a], r)).ravel())
    u, s, _ = np.linalg.svd(np.stack(cols, axis=1), full_matrices=False)
    return u[:, : int(np.sum(s > 1e-6 * s.max()))]


def normal_modes(
    hessian, masses, positions=None, periodic: bool = False, project: bool = True
) -> NormalModes:
    """Normal modes and wavenumbers from a Cartesian Hessian.

    Args:
        hessian: ``[n,3,n,3]`` or ``[3n,3n]`` eV/Å² (symmetrised here).
        masses: ``[n]`` amu (> 0).
        positions: ``[n, 3]`` Å, needed to project rotations (non-periodic, ``project``).
        periodic: a periodic cell (Γ point): only translations are projected.
        project: remove the rigid-body motions (``False``: all ``3n`` modes).

    Returns:
        :class:`NormalModes` (``3n − 6``, ``3n − 5``, ``3n − 3`` or ``3n`` modes).

    Raises:
        ValueError: inconsistent shapes, non-positive masses, missing positions.
    """
    m = np.asarray(masses, np.float64)
    if m.ndim != 1 or len(m) == 0 or not (m > 0).all():
        raise ValueError(f"masses must be a non-empty [n] array of positive amu, got {m!r}")
    n = len(m)
    h = _hessian_3n(hessian, n)
    inv_sq = 1.0 / np.sqrt(np.repeat(m, 3))
    hm = h * inv_sq[:, None] * inv_sq[None, :]
    if project:
        if positions is None and not periodic:
            raise ValueError("positions are needed to project out rotations (non-periodic)")
        pos = np.zeros((n, 3)) if positions is None else np.asarray(positions, np.float64)
        if pos.shape != (n, 3):
            raise ValueError(f"positions must be [{n}, 3], got shape {pos.shape}")
        rb = rigid_body_basis(pos, m, periodic)
        q, _ = np.linalg.qr(np.concatenate([rb, np.eye(3 * n)], axis=1))
        d = q[:, rb.shape[1] : 3 * n]
        lam, w = np.linalg.eigh(d.T @ hm @ d)
        vecs = (d @ w).T
        k = rb.shape[1]
    else:
        lam, vecs = np.linalg.eigh(hm)
        vecs, k = vecs.T, 0
    freqs = np.sign(lam) * EV_PER_SQRT_LAMBDA * np.sqrt(np.abs(lam)) / units.invcm
    return NormalModes(
        frequencies=freqs, mass_weighted_modes=vecs, masses=m, eigenvalues=lam, num_projected=k
    )
