"""Error metrics (MAE/RMSE) computed on the host with numpy from predictions and labels.

Definitions (units eV, Å; multiply by 1000 for meV):

* ``energy_mae/rmse``: total energy per structure;
* ``energy_per_atom_mae/rmse``: ``(Ê − E)/N`` per structure;
* ``forces_mae/rmse``: over all force *components* of labelled atoms;
* ``forces_<Symbol>_mae/rmse``: the same restricted to one element;
* ``stress_mae/rmse``, ``virials_mae/rmse``: over the 9 components of labelled structures;
* response terms (``polarization``, ``dipole`` e·Å; ``conservative_polarizability``,
  ``polarizability`` e·Å²/V; ``born_effective_charges`` e, also per element as
  ``born_effective_charges_<Symbol>_mae/rmse``): over all components of labelled structures /
  atoms. A periodic polarization error (and a field model's periodic dipole error) is first
  folded into the quantum ``e·R`` (docs/theory.md §3), as in the loss.

:func:`error_metrics` works on flat arrays, so any prediction source (the trainer, or
``Potential.predict``) gives the same numbers; :class:`ErrorAccumulator` collects them from
padded batches.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "ErrorAccumulator",
    "RESPONSE_METRICS",
    "error_metrics",
    "fold_dipole_np",
    "format_metrics",
]

#: Response terms with metrics, and the batch label each is compared with.
RESPONSE_METRICS = {
    "polarization": "polarization",
    "conservative_polarizability": "polarizability",
    "born_effective_charges": "born_charges",
    "dipole": "dipole",
    "polarizability": "polarizability",
}
_PER_ATOM = ("born_effective_charges",)


def fold_dipole_np(diff, cell, pbc) -> np.ndarray:
    """Cell-dipole differences ``[S, 3]`` (e·Å) folded into ``e·R`` along periodic axes
    (numpy; unchanged for molecules or singular cells)."""
    out = np.array(diff, np.float64)
    for k in range(len(out)):
        c, p = np.asarray(cell[k], np.float64), np.asarray(pbc[k], bool)
        if p.any() and abs(np.linalg.det(c)) > 1e-8:
            frac = out[k] @ np.linalg.inv(c)
            out[k] = out[k] - np.where(p, np.round(frac), 0.0) @ c
    return out


def _mae_rmse(err: np.ndarray) -> tuple[float, float]:
    err = np.asarray(err, np.float64).ravel()
    if err.size == 0:
        return float("nan"), float("nan")
    return float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err * err)))


def error_metrics(
    energy_pred=None,
    energy_ref=None,
    n_atoms=None,
    forces_pred=None,
    forces_ref=None,
    numbers=None,
    stress_pred=None,
    stress_ref=None,
    virials_pred=None,
    virials_ref=None,
    **responses,
) -> dict[str, float]:
    """MAE and RMSE of whatever is given (flat arrays over structures / atoms).

    Args:
        energy_pred, energy_ref: ``[S]`` eV; ``n_atoms`` ``[S]``.
        forces_pred, forces_ref: ``[A, 3]``; ``numbers`` ``[A]`` atomic numbers (per element).
        stress_pred, stress_ref: ``[S', 3, 3]``; virials likewise.
        **responses: ``<term>_pred`` / ``<term>_ref`` for the terms of
            :data:`RESPONSE_METRICS` (already folded), and ``born_effective_charges_numbers``
            ``[A']`` for the per-element Born-charge errors.
    """
    from ase.data import chemical_symbols

    out: dict[str, float] = {}
    if energy_pred is not None and len(energy_pred):
        de = np.asarray(energy_pred, np.float64) - np.asarray(energy_ref, np.float64)
        out["energy_mae"], out["energy_rmse"] = _mae_rmse(de)
        out["energy_per_atom_mae"], out["energy_per_atom_rmse"] = _mae_rmse(
            de / np.asarray(n_atoms, np.float64)
        )
        out["n_structures"] = int(len(de))
    if forces_pred is not None and len(forces_pred):
        df = np.asarray(forces_pred, np.float64) - np.asarray(forces_ref, np.float64)
        out["forces_mae"], out["forces_rmse"] = _mae_rmse(df)
        out["n_atoms"] = int(len(df))
        if numbers is not None:
            numbers = np.asarray(numbers)
            for z in np.unique(numbers):
                sym = chemical_symbols[int(z)]
                mae, rmse = _mae_rmse(df[numbers == z])
                out[f"forces_{sym}_mae"], out[f"forces_{sym}_rmse"] = mae, rmse
    for name, p, r in (("stress", stress_pred, stress_ref), ("virials", virials_pred, virials_ref)):
        if p is not None and len(p):
            d = np.asarray(p, np.float64) - np.asarray(r, np.float64)
            out[f"{name}_mae"], out[f"{name}_rmse"] = _mae_rmse(d)
    for name in RESPONSE_METRICS:
        p, r = responses.get(f"{name}_pred"), responses.get(f"{name}_ref")
        if p is None or not len(p):
            continue
        d = np.asarray(p, np.float64) - np.asarray(r, np.float64)
        out[f"{name}_mae"], out[f"{name}_rmse"] = _mae_rmse(d)
        zs = responses.get(f"{name}_numbers")
        if name in _PER_ATOM and zs is not None:
            zs = np.asarray(zs)
            for z in np.unique(zs):
                mae, rmse = _mae_rmse(d[zs == z])
                sym = chemical_symbols[int(z)]
                out[f"{name}_{sym}_mae"], out[f"{name}_{sym}_rmse"] = mae, rmse
    return out


class ErrorAccumulator:
    """Collect labelled predictions from padded batches, then :meth:`compute` the metrics."""

    def __init__(self):
        self._parts: dict[str, list[np.ndarray]] = {}

    def _add(self, key, value):
        self._parts.setdefault(key, []).append(np.asarray(value))

    def add(self, pred: Mapping, graph) -> None:
        """Add one (unstacked) padded batch: ``pred`` and ``graph`` leaves are numpy/jax arrays."""
        t = graph.targets
        gmask = np.asarray(graph.graph_mask, bool)
        nmask = np.asarray(graph.node_mask, bool)
        node_graph = np.asarray(graph.node_graph)
        n_node = np.asarray(graph.n_node)
        if "energy" in pred and "energy" in t:
            m = gmask & np.asarray(t.get("has_energy", gmask), bool)
            self._add("energy_pred", np.asarray(pred["energy"])[m])
            self._add("energy_ref", np.asarray(t["energy"])[m])
            self._add("n_atoms", n_node[m])
        if "forces" in pred and "forces" in t:
            has = np.asarray(t.get("has_forces", gmask), bool)
            per_node = len(has) == len(nmask) and len(nmask) != len(gmask)
            m = nmask & (has if per_node else has[node_graph])
            self._add("forces_pred", np.asarray(pred["forces"])[m])
            self._add("forces_ref", np.asarray(t["forces"])[m])
            self._add("numbers", np.asarray(graph.numbers)[m])
        for name in ("stress", "virials"):
            if name in pred and name in t:
                m = gmask & np.asarray(t.get(f"has_{name}", gmask), bool)
                self._add(f"{name}_pred", np.asarray(pred[name])[m])
                self._add(f"{name}_ref", np.asarray(t[name])[m])
        field = "electric_field" in (getattr(graph, "extras", None) or {})
        for name, label in RESPONSE_METRICS.items():
            if name not in pred or label not in t:
                continue
            m = gmask & np.asarray(t.get(f"has_{label}", gmask), bool)
            p, r = np.asarray(pred[name], np.float64), np.asarray(t[label], np.float64)
            if name in _PER_ATOM:
                m = nmask & m[node_graph]
                self._add(f"{name}_numbers", np.asarray(graph.numbers)[m])
            elif name == "polarization" or (name == "dipole" and field):
                cell, pbc = np.asarray(graph.cell), np.asarray(graph.pbc)
                p = r + fold_dipole_np(p - r, cell, pbc)
            self._add(f"{name}_pred", p[m])
            self._add(f"{name}_ref", r[m])

    def add_stacked(self, pred: Mapping, stacked_graph, n_real: int | None = None) -> None:
        """Add a ``[D, ...]`` stacked batch (only the first ``n_real`` sub-batches)."""
        import jax

        d = np.asarray(stacked_graph.graph_mask).shape[0]
        for i in range(d if n_real is None else n_real):
            self.add(
                {k: np.asarray(v)[i] for k, v in pred.items()},
                jax.tree.map(lambda x, i=i: np.asarray(x)[i], stacked_graph),
            )

    def arrays(self) -> dict[str, np.ndarray]:
        """Concatenated arrays (``energy_pred``, ``forces_ref``, ``numbers``, ...)."""
        return {k: np.concatenate(v, axis=0) for k, v in self._parts.items()}

    def compute(self) -> dict[str, float]:
        return error_metrics(**self.arrays())


def format_metrics(m: Mapping[str, float], prefix: str = "") -> str:
    """A one-line summary in meV: ``E/atom``, ``E``, ``F`` (MAE / RMSE), and stress and the
    response terms (in milli-units: me·Å, me·Å²/V, me) if present."""
    parts = []
    for key, label, unit in (
        ("energy_per_atom", "E/atom", "meV"),
        ("energy", "E", "meV"),
        ("forces", "F", "meV/Å"),
        ("stress", "S", "meV/Å³"),
        ("polarization", "P", "me·Å"),
        ("dipole", "μ", "me·Å"),
        ("conservative_polarizability", "α", "me·Å²/V"),
        ("polarizability", "α", "me·Å²/V"),
        ("born_effective_charges", "Z*", "me"),
        ("hessian", "H", "meV/Å²"),
    ):
        if f"{key}_mae" in m:
            parts.append(
                f"{label} MAE {1e3 * m[f'{key}_mae']:.2f} RMSE {1e3 * m[f'{key}_rmse']:.2f} {unit}"
            )
    return prefix + ", ".join(parts)
