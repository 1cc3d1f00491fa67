"""MD output: a plain-text thermodynamics log and extxyz / ASE ``.traj`` trajectories."""

from __future__ import annotations

import math
import pathlib

from ase.io import Trajectory, write

__all__ = ["MDLogger", "TrajectoryWriter", "LOG_COLUMNS"]

#: (key, header, format) of the columns written by :class:`MDLogger`.
LOG_COLUMNS = (
    ("step", "step", "{:>10d}"),
    ("time_ps", "time[ps]", "{:>12.5f}"),
    ("epot", "Epot[eV]", "{:>16.8f}"),
    ("ekin", "Ekin[eV]", "{:>14.8f}"),
    ("etot", "Etot[eV]", "{:>16.8f}"),
    ("temperature", "T[K]", "{:>10.3f}"),
    ("pressure_gpa", "P[GPa]", "{:>12.5f}"),
    ("volume", "V[A^3]", "{:>12.4f}"),
    ("conserved", "H[eV]", "{:>16.8f}"),
)


class MDLogger:
    """Write one line of observables per call (columns :data:`LOG_COLUMNS`).

    Args:
        path: file to write (created, overwritten); ``"-"`` writes to stdout.
    """

    def __init__(self, path):
        self.path = path
        if path == "-":
            import sys

            self._fh, self._own = sys.stdout, False
        else:
            pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fh, self._own = open(path, "w"), True
        widths = [len(f.format(0 if "d" in f else 0.0)) for _, _, f in LOG_COLUMNS]
        header = " ".join(h.rjust(w) for (_, h, _), w in zip(LOG_COLUMNS, widths))
        self._fh.write("#" + header[1:] + "\n")

    def __call__(self, obs: dict) -> None:
        cells = []
        for key, _, fmt in LOG_COLUMNS:
            v = obs.get(key, math.nan)
            v = int(v) if "d" in fmt else float(v)
            cells.append(fmt.format(v))
        self._fh.write(" ".join(cells) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._own:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TrajectoryWriter:
    """Append ``ase.Atoms`` frames to an extxyz file (any suffix but ``.traj``) or an ASE
    ``.traj`` trajectory (positions, velocities, cell, energy, forces, stress)."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix == ".traj":
            self._traj, self._fh = Trajectory(str(self.path), "w"), None
        else:
            self._traj, self._fh = None, open(self.path, "w")
        self.frames = 0

    def write(self, atoms) -> None:
        if self._traj is not None:
            self._traj.write(atoms)
        else:
            write(self._fh, atoms, format="extxyz")
            self._fh.flush()
        self.frames += 1

    def close(self) -> None:
        if self._traj is not None:
            self._traj.close()
        if self._fh is not None:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
