"""Dataset statistics for the energy normalisation (``docs/theory.md`` §2.9 and §5.2).

For each fidelity level ``m`` and element ``Z`` (sorted ``atomic_numbers``):

* ``atomic_energies[m][Z]`` — E0: least squares of the energies on the per-element atom counts
  (or given values, e.g. from a file of isolated atoms); non-periodic single-atom frames fix
  their element's E0. A rank-deficient composition matrix (e.g. one molecule) determines only
  sums of E0 over the training compositions: ``e0_span[m]`` records that row space,
  ``e0_undetermined[m]`` the elements whose own E0 is not determined, and a warning names them;
* ``scale[m][Z]`` — σ: ``rms_forces`` = √(mean_i ‖F_i‖²) over all training atoms (force-norm RMS),
  ``rms_forces_by_element`` = the same per element (elements without forces fall back to the
  global value), ``None`` → 1, or a number;
* ``shift[m][Z]`` — μ: ``None`` → 0, ``mean_delta_energy_per_atom`` = mean over structures of
  ``(E − Σ_i E0_{z_i}) / N``, or a number;
* ``avg_num_neighbors`` — directed edges per atom over the whole set (one constant).

The result is a plain, JSON-friendly dict of numbers; ``tace_jax.train.prepare`` turns it into
the model's ``Statistics``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import DataError
from .neighbor_cache import NeighborCache
from .structure import Structure

__all__ = [
    "compute_statistics",
    "count_elements",
    "e0_span",
    "fit_atomic_energies",
    "isolated_atom_energies",
    "read_e0s_file",
]


def count_elements(structures: Sequence[Structure], atomic_numbers: Sequence[int]) -> np.ndarray:
    """``[S, Z]`` counts of each element of ``atomic_numbers`` per structure."""
    table = {int(z): k for k, z in enumerate(atomic_numbers)}
    counts = np.zeros((len(structures), len(atomic_numbers)), np.float64)
    for i, s in enumerate(structures):
        for z, c in zip(*np.unique(s.numbers, return_counts=True)):
            if int(z) not in table:
                raise DataError(
                    f"{s.where}: field 'numbers' has element {int(z)} not in the model's "
                    f"atomic_numbers {list(atomic_numbers)}"
                )
            counts[i, table[int(z)]] = c
    return counts


def fit_atomic_energies(
    counts: np.ndarray, energies: np.ndarray, fixed: Mapping[int, float] | None = None
) -> np.ndarray:
    """Least-squares E0 per element (``counts @ E0 ≈ energies``); absent elements get 0.

    ``fixed`` maps column indices to known E0s (isolated atoms); the other columns are fitted
    to the remaining energy. Uses the minimum-norm solution when the composition matrix is rank
    deficient (e.g. a single molecule), as ``numpy.linalg.lstsq`` does; :func:`e0_span` tells
    which compositions are determined.
    """
    fixed = dict(fixed or {})
    e0 = np.zeros(counts.shape[1])
    for j, v in fixed.items():
        e0[j] = v
    free = (counts.sum(axis=0) > 0) & ~np.isin(np.arange(counts.shape[1]), list(fixed))
    if len(energies) and free.any():
        rest = energies - counts @ e0
        e0[free] = np.linalg.lstsq(counts[:, free], rest, rcond=None)[0]
    return e0


def e0_span(counts: np.ndarray, fixed=()) -> tuple[np.ndarray | None, list[int]]:
    """The compositions whose E0 sum a fit determines.

    Args:
        counts: ``[S, Z]`` composition matrix of the frames with an energy.
        fixed: column indices whose E0 is known (isolated atoms).

    Returns:
        ``(basis, undetermined)``: an orthonormal basis ``[r, Z]`` of the row space of
        ``counts`` plus the unit vectors of ``fixed`` (``None`` when it is everything), and the
        column indices whose own E0 is not determined (their unit vector is outside the span).
    """
    z = counts.shape[1]
    rows = np.concatenate([counts, np.eye(z)[list(fixed)]]) if len(fixed) else counts
    if rows.size == 0:
        return np.zeros((0, z)), list(range(z))
    _, sv, vt = np.linalg.svd(rows, full_matrices=False)
    rank = int(np.sum(sv > 1e-8 * max(1.0, float(sv.max(initial=0.0)))))
    if rank == z:
        return None, []
    basis = vt[:rank]
    resid = np.eye(z) - basis.T @ basis  # column j: e_j minus its projection
    undetermined = [j for j in range(z) if np.linalg.norm(resid[:, j]) > 1e-6]
    return basis, undetermined


def isolated_atom_energies(
    structures: Sequence[Structure], where: str = "data"
) -> dict[int, float]:
    """``{Z: E}`` of the non-periodic single-atom frames with an energy (isolated atoms).

    Raises:
        DataError: two isolated-atom frames of one element with different energies.
    """
    out: dict[int, tuple[float, str]] = {}
    for s in structures:
        if s.n_atoms != 1 or s.pbc.any() or s.energy is None:
            continue
        z, e = int(s.numbers[0]), float(s.energy)
        if z in out and abs(out[z][0] - e) > 1e-8:
            raise DataError(
                f"{where}: isolated-atom energies of element {z} differ: {out[z][0]} eV "
                f"({out[z][1]}) and {e} eV ({s.where})"
            )
        out[z] = (e, s.where)
    return {z: v[0] for z, v in out.items()}


def read_e0s_file(path, energy_key: str = "energy", units: Mapping | None = None) -> dict:
    """``{Z: E0}`` from a file of isolated atoms (one atom per frame, e.g. an extxyz).

    Raises:
        DataError: naming the file and frame of a frame with more than one atom or no energy.
    """
    from .readers import read_structures

    structures = read_structures(path, energy_key=energy_key, units=units)
    if energy_key != "energy" and any(s.energy is None for s in structures):
        structures = read_structures(path, units=units)
    for s in structures:
        if s.n_atoms != 1:
            raise DataError(
                f"{s.where}: e0s file frame has {s.n_atoms} atoms; expected one isolated atom"
            )
        if s.energy is None:
            raise DataError(f"{s.where}: e0s file frame has no field {energy_key!r}")
    return isolated_atom_energies(structures, where=str(path))


def _given_e0(value: Mapping, level: int, atomic_numbers, counts) -> np.ndarray:
    from ase.data import atomic_numbers as symbol_to_z

    if value and all(isinstance(v, Mapping) for v in value.values()):  # {level: {Z: E0}}
        if level not in value:
            raise DataError(f"atomic_energies: no entry for level {level}")
        value = value[level]
    e0 = {}
    for k, v in value.items():
        z = symbol_to_z[k] if isinstance(k, str) and not k.isdigit() else int(k)
        e0[z] = float(v)
    out = np.zeros(len(atomic_numbers))
    present = counts.sum(axis=0) > 0
    for j, z in enumerate(atomic_numbers):
        if int(z) in e0:
            out[j] = e0[int(z)]
        elif present[j]:
            raise DataError(f"atomic_energies: no E0 given for element {int(z)} (level {level})")
    return out


def compute_statistics(
    structures: Sequence[Structure],
    atomic_numbers: Sequence[int],
    cutoff: float | None = None,
    *,
    atomic_energies: str | Mapping = "least_squares",
    scale_type: str | float | None = "rms_forces_by_element",
    shift_type: str | float | None = None,
    num_levels: int | None = None,
    neighbors: NeighborCache | None = None,
) -> dict:
    """Statistics of a training set as a plain (JSON-friendly) dict.

    Args:
        structures: training structures (eV, Å).
        atomic_numbers: the model's sorted element list.
        cutoff: for ``avg_num_neighbors`` (not needed when ``neighbors`` is given).
        atomic_energies: ``"least_squares"``, ``{Z or symbol: E0}`` or ``{level: {Z: E0}}``.
        scale_type: ``"rms_forces_by_element"``, ``"rms_forces"``, ``None`` or a number.
        shift_type: ``None``, ``"mean_delta_energy_per_atom"`` or a number.
        num_levels: number of fidelity levels M (default ``max(level) + 1``).
        neighbors: a cache to reuse neighbour lists.

    Returns:
        ``atomic_numbers``, ``atomic_energies`` [M][Z], ``scale`` [M][Z], ``shift`` [M][Z],
        ``avg_num_neighbors``, ``rms_forces`` [M], ``rms_forces_by_element`` [M][Z],
        ``mean_delta_energy_per_atom`` [M], ``num_structures`` [M], ``num_atoms``, and the
        ``scale_type`` / ``shift_type`` used.
    """
    atomic_numbers = [int(z) for z in atomic_numbers]
    if list(atomic_numbers) != sorted(set(atomic_numbers)):
        raise DataError(f"atomic_numbers must be sorted and unique, got {atomic_numbers}")
    if not structures:
        raise DataError("compute_statistics: no structures")
    counts = count_elements(structures, atomic_numbers)
    levels = np.array([s.level for s in structures])
    m_count = int(levels.max()) + 1 if num_levels is None else int(num_levels)
    if levels.max() >= m_count:
        raise DataError(f"compute_statistics: level {levels.max()} >= num_levels {m_count}")
    z_index = {z: j for j, z in enumerate(atomic_numbers)}
    out: dict = {
        k: []
        for k in (
            "atomic_energies",
            "scale",
            "shift",
            "rms_forces",
            "rms_forces_by_element",
            "mean_delta_energy_per_atom",
            "num_structures",
        )
    }
    out["e0_span"], out["e0_undetermined"], out["e0_isolated"], notes = [], [], [], []
    for m in range(m_count):
        sel = np.where(levels == m)[0]
        with_e = [i for i in sel if structures[i].energy is not None]
        energies = np.array([structures[i].energy for i in with_e])
        span, bad, iso = None, [], {}
        if isinstance(atomic_energies, str):
            if atomic_energies != "least_squares":
                raise DataError(f"atomic_energies: unknown option {atomic_energies!r}")
            iso = isolated_atom_energies([structures[i] for i in with_e])
            fixed = {z_index[z]: e for z, e in iso.items() if z in z_index}
            e0 = fit_atomic_energies(counts[with_e], energies, fixed)
            span, bad = e0_span(counts[with_e], sorted(fixed))
        else:
            e0 = _given_e0(atomic_energies, m, atomic_numbers, counts[sel])
        present = counts[sel].sum(axis=0) > 0
        bad_z = [atomic_numbers[j] for j in bad if present[j]]
        if bad_z:
            notes.append(_underdetermined_note(bad_z, m, len(with_e)))
        out["e0_span"].append(None if span is None else span.tolist())
        out["e0_undetermined"].append(bad_z)
        out["e0_isolated"].append({str(z): e for z, e in sorted(iso.items())})
        n_atoms = counts[with_e].sum(axis=1)
        delta = (energies - counts[with_e] @ e0) / np.maximum(n_atoms, 1)
        mean_delta = float(delta.mean()) if len(delta) else 0.0
        sq_sum, n_sum = np.zeros(len(atomic_numbers)), np.zeros(len(atomic_numbers))
        for i in sel:
            s = structures[i]
            if s.forces is None:
                continue
            idx = np.array([z_index[int(z)] for z in s.numbers], dtype=np.int64)
            np.add.at(sq_sum, idx, np.sum(s.forces**2, axis=1))
            np.add.at(n_sum, idx, 1.0)
        rms = float(np.sqrt(sq_sum.sum() / n_sum.sum())) if n_sum.sum() else float("nan")
        rms_el = np.where(n_sum > 0, np.sqrt(sq_sum / np.maximum(n_sum, 1)), np.nan)
        out["atomic_energies"].append(e0.tolist())
        out["scale"].append(_scale(scale_type, rms, rms_el).tolist())
        out["shift"].append(_shift(shift_type, mean_delta, len(atomic_numbers)).tolist())
        out["rms_forces"].append(rms)
        out["rms_forces_by_element"].append(rms_el.tolist())
        out["mean_delta_energy_per_atom"].append(mean_delta)
        out["num_structures"].append(int(len(sel)))
    out["avg_num_neighbors"] = _avg_num_neighbors(structures, cutoff, neighbors)
    out["atomic_numbers"] = atomic_numbers
    out["num_atoms"] = int(counts.sum())
    out["scale_type"] = scale_type
    out["shift_type"] = shift_type
    out["warnings"] = notes
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return out


def _underdetermined_note(zs: list[int], level: int, n_frames: int) -> str:
    from ase.data import chemical_symbols

    names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in zs)
    return (
        f"e0s least_squares (level {level}): the composition matrix of the {n_frames} "
        f"training energies is rank deficient; the reference energy E0 of {names} is not "
        "determined (only sums over the training compositions are). Predicted absolute "
        "energies of other compositions are meaningless: give isolated-atom energies (an "
        "'e0s' file or mapping, or single-atom frames in the data)"
    )


def _scale(scale_type, rms: float, rms_el: np.ndarray) -> np.ndarray:
    z = len(rms_el)
    if scale_type is None:
        return np.ones(z)
    if isinstance(scale_type, (int, float)):
        return np.full(z, float(scale_type))
    if scale_type not in ("rms_forces", "rms_forces_by_element"):
        raise DataError(f"scale_type: unknown option {scale_type!r}")
    glob = rms if np.isfinite(rms) and rms > 0 else 1.0
    if scale_type == "rms_forces":
        return np.full(z, glob)
    return np.where(np.isfinite(rms_el) & (rms_el > 0), rms_el, glob)


def _shift(shift_type, mean_delta: float, z: int) -> np.ndarray:
    if shift_type is None:
        return np.zeros(z)
    if isinstance(shift_type, (int, float)):
        return np.full(z, float(shift_type))
    if shift_type != "mean_delta_energy_per_atom":
        raise DataError(f"shift_type: unknown option {shift_type!r}")
    return np.full(z, mean_delta)


def _avg_num_neighbors(structures, cutoff, neighbors) -> float:
    if neighbors is None:
        if cutoff is None:
            raise DataError("compute_statistics: give cutoff or neighbors for avg_num_neighbors")
        neighbors = NeighborCache(cutoff)
    edges = sum(len(e[0]) for e in neighbors.compute(structures))
    atoms = sum(s.n_atoms for s in structures)
    return float(edges / max(atoms, 1))
