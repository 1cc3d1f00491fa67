"""Harmonic vibrational analysis from an autodiff Hessian.

Mass-weighted Hessian ``H̃ = M^{-1/2} H M^{-1/2}``; its eigenvalues ``λ = ω²`` give the angular
frequencies. Rigid-body motions are projected out exactly (Eckart conditions): the three
translations always, the three rotations (two for a linear molecule) for non-periodic
structures. The remaining block ``Dᵀ H̃ D`` (``D`` an orthonormal basis of the internal
coordinates) is diagonalised.

**Γ-point phonons.** For a periodic cell the Hessian of the cell's energy with respect to its
atoms' positions already contains every periodic image of the displaced atom (moving ``x_j``
moves all its images), i.e. it is ``Σ_R Φ(i, j+R)``: the dynamical matrix at q = 0 of the
crystal. Its eigenvalues are the Γ-point phonon frequencies (three acoustic modes removed by the
translation projection). No supercell is needed for Γ; other q-points need a supercell (not
implemented).

Units: Hessian eV/Å², masses amu; energies ``ħω`` in eV and wavenumbers in cm⁻¹ with the same
conversion as ``ase.vibrations`` (imaginary frequencies are reported as negative numbers).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from ase import units

__all__ = [
    "VibrationResult",
    "harmonic_analysis",
    "rigid_body_vectors",
    "vibrational_analysis",
    "hessian_matrix",
    "EV_PER_SQRT_LAMBDA",
]

#: ħω (eV) = EV_PER_SQRT_LAMBDA · sqrt(λ) for λ in eV/(Å²·amu) (as in ase.vibrations).
EV_PER_SQRT_LAMBDA = units._hbar * 1e10 / np.sqrt(units._e * units._amu)


@dataclasses.dataclass(frozen=True)
class VibrationResult:
    """Result of :func:`harmonic_analysis`.

    Attributes:
        frequencies: ``[K]`` cm⁻¹ of the internal modes, ascending; imaginary ones negative.
        energies: ``[K]`` ``ħω`` in eV (complex for imaginary modes).
        modes: ``[K, N, 3]`` Cartesian displacement patterns (mass-weighted eigenvectors divided
            by ``sqrt(m)``, each normalised to unit length).
        mass_weighted_modes: ``[K, 3N]`` orthonormal eigenvectors of ``H̃``.
        zpe: zero-point energy ``½ Σ ħω`` over the real modes, eV.
        num_projected: rigid-body degrees of freedom removed (6, 5, 3 or 0).
        periodic: whether the structure was treated as periodic (Γ point).
    """

    frequencies: np.ndarray
    energies: np.ndarray
    modes: np.ndarray
    mass_weighted_modes: np.ndarray
    zpe: float
    num_projected: int
    periodic: bool

    @property
    def num_imaginary(self) -> int:
        return int(np.sum(self.frequencies < 0))

    def summary(self) -> str:
        """A table of the modes and the zero-point energy."""
        kind = "Gamma-point phonons" if self.periodic else "normal modes"
        lines = [
            f"{len(self.frequencies)} {kind} ({self.num_projected} rigid-body dof projected)",
            " mode   freq [cm^-1]   energy [meV]",
        ]
        for k, (f, e) in enumerate(zip(self.frequencies, self.energies)):
            e_mev = 1e3 * abs(e)
            tag = "i" if f < 0 else " "
            lines.append(f"{k:5d} {abs(f):13.3f}{tag} {e_mev:13.4f}")
        lines.append(f"Zero-point energy: {self.zpe:.6f} eV")
        return "\n".join(lines)


def hessian_matrix(hessian) -> np.ndarray:
    """``[N,3,N,3]`` or ``[3N,N,3]`` or ``[3N,3N]`` → symmetric-checked ``[3N, 3N]`` float64."""
    h = np.asarray(hessian, np.float64)
    if h.ndim == 4 or h.ndim == 3:
        n3 = h.shape[0] * (3 if h.ndim == 4 else 1)
        h = h.reshape(n3, n3)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] % 3:
        raise ValueError(f"hessian must be [N,3,N,3] or [3N,3N], got shape {np.shape(hessian)}")
    return h


def rigid_body_vectors(positions, masses, periodic: bool) -> np.ndarray:
    """Orthonormal mass-weighted rigid-body vectors ``[3N, k]`` (k = 3, 5 or 6).

    Translations ``√m_i e_a``; for non-periodic structures also rotations
    ``√m_i (e_a × (x_i − x_com))``. Linear molecules give one rotation of zero norm, which is
    dropped (rank revealed by SVD).
    """
    pos = np.asarray(positions, np.float64)
    m = np.asarray(masses, np.float64)
    n = len(m)
    sq = np.sqrt(m)
    vecs = []
    for a in range(3):
        t = np.zeros((n, 3))
        t[:, a] = sq
        vecs.append(t.reshape(-1))
    if not periodic and n > 1:
        com = (m[:, None] * pos).sum(0) / m.sum()
        r = pos - com
        for a in range(3):
            e = np.zeros(3)
            e[a] = 1.0
            vecs.append((sq[:, None] * np.cross(e, r)).reshape(-1))
    v = np.stack(vecs, axis=1)
    u, s, _ = np.linalg.svd(v, full_matrices=False)
    rank = int(np.sum(s > 1e-6 * s.max()))
    return u[:, :rank]


def harmonic_analysis(
    hessian, masses, positions=None, periodic: bool = False, project: bool = True
) -> VibrationResult:
    """Normal modes and frequencies from a Cartesian Hessian.

    Args:
        hessian: ``[N,3,N,3]`` or ``[3N,3N]`` eV/Å² (symmetrised here).
        masses: ``[N]`` amu.
        positions: ``[N, 3]`` Å (needed for the rotational projection).
        periodic: Γ-point phonons of a periodic cell (only translations are projected).
        project: remove rigid-body motions; ``False`` diagonalises the full ``H̃`` (all 3N
            modes, like ``ase.vibrations``).

    Returns:
        :class:`VibrationResult`.
    """
    h = hessian_matrix(hessian)
    h = 0.5 * (h + h.T)
    m = np.repeat(np.asarray(masses, np.float64), 3)
    if len(m) != h.shape[0]:
        raise ValueError(f"{len(m) // 3} masses for a Hessian of {h.shape[0] // 3} atoms")
    inv_sq = 1.0 / np.sqrt(m)
    hm = h * inv_sq[:, None] * inv_sq[None, :]
    if project:
        if positions is None and not periodic:
            raise ValueError("positions are needed to project out rotations")
        n = len(m) // 3
        pos = np.zeros((n, 3)) if positions is None else positions
        rb = rigid_body_vectors(pos, m[::3], periodic)
        # orthonormal basis of the complement of the rigid-body space
        q, _ = np.linalg.qr(np.concatenate([rb, np.eye(len(m))], axis=1))
        d = q[:, rb.shape[1] :]
        lam, w = np.linalg.eigh(d.T @ hm @ d)
        vecs = (d @ w).T
        k = rb.shape[1]
    else:
        lam, w = np.linalg.eigh(hm)
        vecs = w.T
        k = 0
    energies = EV_PER_SQRT_LAMBDA * np.sqrt(lam.astype(complex))
    freqs = np.where(lam < 0, -np.abs(energies), energies.real) / units.invcm
    cart = vecs * inv_sq[None, :]
    cart = cart / np.linalg.norm(cart, axis=1, keepdims=True)
    zpe = 0.5 * float(np.sum(energies.real[lam > 0]))
    return VibrationResult(
        frequencies=np.asarray(freqs.real, np.float64),
        energies=energies,
        modes=cart.reshape(len(lam), -1, 3),
        mass_weighted_modes=vecs,
        zpe=zpe,
        num_projected=k,
        periodic=bool(periodic),
    )


def vibrational_analysis(potential, atoms, project: bool = True, chunk_size: int = 16):
    """Hessian from ``potential.hessian(atoms)`` and :func:`harmonic_analysis` of ``atoms``.

    Periodic structures (any ``pbc``) are treated as Γ-point phonons of their cell.

    Returns:
        ``(VibrationResult, hessian [3N, 3N])``.
    """
    try:
        h = potential.hessian(atoms, chunk_size=chunk_size)
    except TypeError:
        h = potential.hessian(atoms)
    h = hessian_matrix(h)
    res = harmonic_analysis(
        h,
        atoms.get_masses(),
        atoms.get_positions(),
        periodic=bool(np.any(atoms.pbc)),
        project=project,
    )
    return res, h
