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

from tace_jax.properties.normal_modes import EV_PER_SQRT_LAMBDA, normal_modes, rigid_body_basis

__all__ = [
    "VibrationResult",
    "harmonic_analysis",
    "rigid_body_vectors",
    "vibrational_analysis",
    "hessian_matrix",
    "EV_PER_SQRT_LAMBDA",
]


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
    """Orthonormal mass-weighted rigid-body vectors ``[3N, k]`` (k = 3, 5 or 6): translations
    and, for non-periodic structures, rotations (rank revealed by SVD, so a linear molecule
    has 5). See :func:`tace_jax.properties.normal_modes.rigid_body_basis`."""
    return rigid_body_basis(positions, masses, periodic)


def harmonic_analysis(
    hessian, masses, positions=None, periodic: bool = False, project: bool = True
) -> VibrationResult:
    """Normal modes and frequencies from a Cartesian Hessian
    (:func:`tace_jax.properties.normal_modes.normal_modes`), with energies and ZPE.

    Args:
        hessian: ``[N,3,N,3]``, ``[3N,N,3]`` or ``[3N,3N]`` eV/Å² (symmetrised).
        masses: ``[N]`` amu.
        positions: ``[N, 3]`` Å (needed for the rotational projection).
        periodic: Γ-point phonons of a periodic cell (only translations are projected).
        project: remove rigid-body motions; ``False`` diagonalises the full ``H̃`` (all 3N
            modes, like ``ase.vibrations``).

    Returns:
        :class:`VibrationResult`.
    """
    h = hessian_matrix(hessian)
    m = np.asarray(masses, np.float64)
    if 3 * len(m) != h.shape[0]:
        raise ValueError(f"{len(m)} masses for a Hessian of {h.shape[0] // 3} atoms")
    if project and positions is None and not periodic:
        raise ValueError("positions are needed to project out rotations")
    nm = normal_modes(h, m, positions, periodic=periodic, project=project)
    lam, vecs = nm.eigenvalues, nm.mass_weighted_modes
    energies = EV_PER_SQRT_LAMBDA * np.sqrt(lam.astype(complex))
    cart = nm.displacements.reshape(len(lam), -1)
    cart = cart / np.linalg.norm(cart, axis=1, keepdims=True)
    zpe = 0.5 * float(np.sum(energies.real[lam > 0]))
    return VibrationResult(
        frequencies=np.asarray(nm.frequencies, np.float64),
        energies=energies,
        modes=cart.reshape(len(lam), -1, 3),
        mass_weighted_modes=vecs,
        zpe=zpe,
        num_projected=nm.num_projected,
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
