"""``Statistics``: dataset constants that enter the model as fixed buffers (docs/theory.md §2.9).

Per fidelity level ``m`` and element ``z`` (columns follow the model's sorted
``atomic_numbers``): reference energies ``E0``, scale ``σ`` and shift ``μ``; plus the average
number of neighbours ``n̄`` shared by every interaction layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Statistics"]


def _table(x: Any, name: str) -> tuple[tuple[float, ...], ...]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"Statistics.{name}: expected [levels, elements], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"Statistics.{name}: contains non-finite values")
    return tuple(tuple(float(v) for v in row) for row in a)


@dataclasses.dataclass(frozen=True)
class Statistics:
    """Fixed per-level, per-element constants of a TACE model.

    Attributes:
        atomic_energies: ``E0[m][z]``.
        scale: ``σ[m][z]`` (multiplies the learned energy and ZBL).
        shift: ``μ[m][z]``.
        avg_num_neighbors: ``n̄`` (> 0).
        e0_span: per level, an orthonormal basis ``[r, Z]`` of the compositions (element
            counts) whose E0 sum the training energies determine (the row space of the
            least-squares composition matrix), or ``None`` per level / overall when every
            composition is determined (given E0s, full-rank fit, files without the field).
    """

    atomic_energies: tuple[tuple[float, ...], ...]
    scale: tuple[tuple[float, ...], ...]
    shift: tuple[tuple[float, ...], ...]
    avg_num_neighbors: float = 1.0
    e0_span: tuple | None = None

    def __post_init__(self):
        if self.e0_span is not None:
            span = tuple(
                None if b is None else tuple(tuple(float(v) for v in row) for row in b)
                for b in self.e0_span
            )
            object.__setattr__(self, "e0_span", None if all(b is None for b in span) else span)
        for name in ("atomic_energies", "scale", "shift"):
            object.__setattr__(self, name, _table(getattr(self, name), name))
        object.__setattr__(self, "avg_num_neighbors", float(self.avg_num_neighbors))
        shapes = {np.shape(getattr(self, n)) for n in ("atomic_energies", "scale", "shift")}
        if len(shapes) != 1:
            raise ValueError(
                f"Statistics: atomic_energies/scale/shift must share a shape [levels, elements], "
                f"got {sorted(shapes)}"
            )
        if not (math.isfinite(self.avg_num_neighbors) and self.avg_num_neighbors > 0):
            raise ValueError(
                f"Statistics.avg_num_neighbors must be finite and > 0, got {self.avg_num_neighbors}"
            )

    @property
    def num_levels(self) -> int:
        return len(self.scale)

    @property
    def num_elements(self) -> int:
        return len(self.scale[0])

    @classmethod
    def default(cls, n_elements: int, n_levels: int = 1) -> Statistics:
        """Neutral statistics: ``E0 = 0``, ``σ = 1``, ``μ = 0``, ``n̄ = 1``."""
        zeros = np.zeros((n_levels, n_elements))
        return cls(zeros, np.ones((n_levels, n_elements)), zeros, 1.0)

    def check_compatible(self, num_elements: int, num_levels: int) -> None:
        """Raise ``ValueError`` unless the tables are ``[num_levels, num_elements]``."""
        if (self.num_levels, self.num_elements) != (num_levels, num_elements):
            raise ValueError(
                f"Statistics tables are [{self.num_levels}, {self.num_elements}] "
                f"(levels, elements) but the model needs [{num_levels}, {num_elements}]"
            )

    def to_dict(self) -> dict[str, Any]:
        """A json-able dict."""
        return {
            "atomic_energies": [list(r) for r in self.atomic_energies],
            "scale": [list(r) for r in self.scale],
            "shift": [list(r) for r in self.shift],
            "avg_num_neighbors": self.avg_num_neighbors,
            **({} if self.e0_span is None else {"e0_span": self.e0_span_lists()}),
        }

    def e0_span_lists(self) -> list | None:
        """``e0_span`` as nested lists (json-able)."""
        if self.e0_span is None:
            return None
        return [None if b is None else [list(r) for r in b] for b in self.e0_span]

    def e0_span_warning(
        self, numbers_list: Sequence, atomic_numbers: Sequence[int], levels: Sequence[int] = ()
    ) -> str | None:
        """A warning text when a composition lies outside the span of the fitted E0s.

        Args:
            numbers_list: per structure, its atomic numbers.
            atomic_numbers: the model's sorted elements (columns of the tables).
            levels: per structure, its fidelity level (default 0).
        """
        if self.e0_span is None:
            return None
        col = {int(z): j for j, z in enumerate(atomic_numbers)}
        for k, numbers in enumerate(numbers_list):
            try:
                m = int(np.asarray(levels[k]).item()) if k < len(levels) else 0
            except (TypeError, ValueError):  # a named level: the predictor checks it
                m = 0
            basis = self.e0_span[m] if 0 <= m < len(self.e0_span) else None
            if basis is None:
                continue
            c = np.zeros(len(col))
            for z in np.asarray(numbers).tolist():
                if int(z) in col:
                    c[col[int(z)]] += 1
            b = np.asarray(basis, np.float64).reshape(-1, len(col))
            resid = c - b.T @ (b @ c)
            if np.linalg.norm(resid) > 1e-6 * max(1.0, float(np.linalg.norm(c))):
                from ase.data import chemical_symbols
                from ase.formula import Formula

                counts = {chemical_symbols[int(z)]: int(n) for z, n in zip(atomic_numbers, c) if n}
                formula = Formula.from_dict(counts).format("hill")
                return (
                    f"structure {k} ({formula}): its composition is not a combination of the "
                    f"training compositions (level {m}), for which alone the least-squares "
                    "reference energies E0 are determined; its absolute energy is not "
                    "meaningful (train with isolated-atom energies: config key 'e0s' as a file "
                    "or mapping, or single-atom frames in the data)"
                )
        return None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Statistics:
        """Inverse of :meth:`to_dict`."""
        keys = {"atomic_energies", "scale", "shift", "avg_num_neighbors", "e0_span"}
        unknown = sorted(set(d) - keys)
        if unknown:
            raise ValueError(f"Statistics.from_dict: unknown keys {unknown}")
        return cls(**d)

    @classmethod
    def from_reference(
        cls,
        stats: Sequence[Mapping[str, Any]],
        atomic_numbers: Sequence[int],
        shift_type: str | None = None,
    ) -> Statistics:
        """From the reference json ``statistics`` list (one dict per level, in level order).

        Uses ``atomic_energy`` (E0) and ``rms_forces_by_element`` (σ), keyed by atomic number
        (str or int); μ is ``mean_delta_energy_per_atom`` when ``shift_type`` names it
        (``scale_shift.shift_type`` of the model config), else 0.

        Raises:
            ValueError: levels out of order, or an element or shift table missing.
        """
        e0, sc, mu = [], [], []
        for m, lev in enumerate(stats):
            if int(lev.get("level", m)) != m:
                raise ValueError(f"statistics[{m}] is for level {lev.get('level')}, expected {m}")
            e0.append(_by_z(lev, "atomic_energy", atomic_numbers, m))
            sc.append(_by_z(lev, "rms_forces_by_element", atomic_numbers, m))
            if shift_type is None:
                mu.append([0.0] * len(atomic_numbers))
            elif shift_type == "mean_delta_energy_per_atom":
                mu.append(_by_z(lev, shift_type, atomic_numbers, m))
            else:
                raise ValueError(f"statistics: unsupported shift_type {shift_type!r}")
        return cls(e0, sc, mu, float(stats[0]["avg_num_neighbors"]))

    def to_reference(self, atomic_numbers: Sequence[int]) -> list[dict[str, Any]]:
        """The reference json ``statistics`` list (inverse of :meth:`from_reference`, with μ
        stored as ``mean_delta_energy_per_atom``)."""
        zs = [int(z) for z in atomic_numbers]
        table = lambda t, m: {str(z): float(t[m][j]) for j, z in enumerate(zs)}  # noqa: E731
        return [
            {
                "level": m,
                "atomic_numbers": zs,
                "avg_num_neighbors": self.avg_num_neighbors,
                "atomic_energy": table(self.atomic_energies, m),
                "rms_forces_by_element": table(self.scale, m),
                "mean_delta_energy_per_atom": table(self.shift, m),
            }
            for m in range(self.num_levels)
        ]

    @classmethod
    def from_buffers(cls, buffers: Mapping[str, Any], prefix: str = "readout_fn.") -> Statistics:
        """From the reference model buffers (``state_dict`` names without ``b/``).

        ``atomic_energy_layer.atomic_energy``, ``scale_shift.scale``/``.shift`` (``[M, Z_n]``)
        and the ``avg_num_neighbors`` of every interaction (one shared value).

        Raises:
            ValueError: a buffer missing, or layers with different ``avg_num_neighbors``.
        """
        names = {
            "atomic_energies": "atomic_energy_layer.atomic_energy",
            "scale": "scale_shift.scale",
            "shift": "scale_shift.shift",
        }
        missing = [prefix + n for n in names.values() if prefix + n not in buffers]
        if missing:
            raise ValueError(f"statistics buffers missing: {missing}")
        tables = {
            k: np.atleast_2d(np.asarray(buffers[prefix + n], float)) for k, n in names.items()
        }
        navg = sorted({float(v) for k, v in buffers.items() if k.endswith(".avg_num_neighbors")})
        if len(navg) != 1:
            raise ValueError(f"expected one avg_num_neighbors buffer value, got {navg}")
        return cls(**tables, avg_num_neighbors=navg[0])


def _by_z(level: Mapping[str, Any], key: str, atomic_numbers: Sequence[int], m: int) -> list:
    if key not in level:
        raise ValueError(f"statistics[{m}] has no {key!r}")
    d = {int(k): float(v) for k, v in level[key].items()}
    missing = [z for z in atomic_numbers if int(z) not in d]
    if missing:
        raise ValueError(f"statistics[{m}].{key} has no entry for Z = {missing}")
    return [d[int(z)] for z in atomic_numbers]
