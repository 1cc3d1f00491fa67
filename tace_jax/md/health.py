"""Simulation health checks, evaluated inside the compiled MD chunk.

Each step of a :class:`~tace_jax.md.runners.Simulation` chunk is reduced to three scalars per
replica, ``(code, atom, value)``: the first failed check (0: healthy), its worst atom and the
offending value. The chunk carries the first failure and freezes the state at the last healthy
step, so a run that blows up stops with :class:`SimulationUnstable` and can be restarted from
that state. The checks, in order of precedence:

* ``non-finite``: a non-finite position, momentum or force (and energy, for NVE);
* ``displacement``: an atom moved further in one step than ``max_displacement`` Å (default
  half the neighbour-list skin, beyond which a pair can be missed before the next update);
* ``temperature``: the instantaneous temperature (3N degrees of freedom) above
  ``max_temperature`` K;
* ``energy drift``: NVE only, ``|H(t) − H(start)| / N`` above ``max_energy_drift`` eV/atom;
* ``volume change``: NPT only, the volume left ``[V₀/f, f·V₀]`` within one chunk
  (``f = max_volume_change``).

Thresholds are :class:`~tace_jax.md.config.MDConfig` keys; ``None`` switches a check off and
``health_checks=False`` all of them (the chunk is then compiled without them).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from ase import units

__all__ = ["CHECKS", "HealthLimits", "SimulationUnstable", "health_limits", "make_step_check"]

#: check names by code (code 0 is healthy).
CHECKS = (
    None,
    "non-finite position",
    "non-finite momentum",
    "non-finite force",
    "non-finite energy",
    "displacement",
    "temperature",
    "energy drift",
    "volume change",
)
_UNITS = {
    "displacement": ("one-step displacement", "Å"),
    "temperature": ("temperature", "K"),
    "energy drift": ("|H - H(start)|/N", "eV/atom"),
    "volume change": ("V/V(chunk start)", ""),
}


class SimulationUnstable(RuntimeError):
    """An MD health check failed; the simulation stopped at its last healthy step.

    Attributes:
        check: the failed check (one of :data:`CHECKS`).
        step: the first unhealthy step; ``last_step = step − 1`` is where the state stopped.
        atom: the worst atom (0-based); ``replica``: the replica (batched runs) or ``None``.
        value, limit: the offending value and its threshold.
        atoms: the last healthy frame (``ase.Atoms``), once the runner has attached it.
        restart: path of the restart file written from it, or ``None``.
    """

    def __init__(self, check, step, atom, value, limit, replica=None):
        self.check, self.step, self.atom = check, int(step), int(atom)
        self.value, self.limit, self.replica = float(value), limit, replica
        self.last_step = self.step - 1
        self.atoms, self.restart = None, None
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"atom {self.atom}" + (
            "" if self.replica is None else f" of replica {self.replica}"
        )
        if self.check.startswith("non-finite"):
            what = f"{where} has a non-finite value ({self.value})"
        else:
            name, unit = _UNITS[self.check]
            unit = f" {unit}" if unit else ""
            what = f"{name} = {self.value:.4g}{unit} exceeds the limit {self.limit:.4g}{unit}"
            what += f" (worst: {where})"
        text = (
            f"simulation unstable: {self.check} check failed at step {self.step}: {what}; "
            f"stopped at the last healthy step {self.last_step}"
        )
        if self.restart is not None:
            text += f"; restart frame written to {self.restart}"
        return text + " (reduce the time step, or relax the check in the MD config)"

    def set_restart(self, atoms, path=None) -> None:
        """Attach the last healthy frame (and the path it was written to)."""
        self.atoms, self.restart = atoms, None if path is None else str(path)
        self.args = (self._text(),)


@dataclasses.dataclass(frozen=True)
class HealthLimits:
    """Resolved thresholds (``None``: check off). Units: K, eV/atom, Å, volume ratio."""

    finite: bool
    max_temperature: float | None
    max_energy_drift: float | None
    max_displacement: float | None
    max_volume_change: float | None

    def limit(self, check: str):
        if check == "temperature":
            return self.max_temperature
        if check == "energy drift":
            return self.max_energy_drift
        if check == "displacement":
            return self.max_displacement
        if check == "volume change":
            return self.max_volume_change
        return None


def health_limits(config, ensemble: str) -> HealthLimits | None:
    """Thresholds of ``config`` (an :class:`~tace_jax.md.config.MDConfig`) for ``ensemble``;
    ``None`` when ``health_checks`` is off.

    ``max_temperature="auto"``: 10× the target temperature for thermostats (at least 100 K);
    for NVE ``max(1e4 K, 10 × the initial temperature)``. ``max_displacement="auto"``: half the
    skin.
    """
    if not config.health_checks:
        return None
    t_init = config.temperature if config.init_temperature is None else config.init_temperature
    t_max = config.max_temperature
    if t_max == "auto":
        if ensemble == "nve":
            t_max = max(1.0e4, 10.0 * float(t_init))
        else:
            t_max = max(100.0, 10.0 * float(config.temperature))
    disp = config.max_displacement
    if disp == "auto":
        disp = 0.5 * float(config.skin)
    as_float = lambda v: None if v is None else float(v)
    return HealthLimits(
        finite=bool(config.check_finite),
        max_temperature=as_float(t_max),
        max_energy_drift=as_float(config.max_energy_drift) if ensemble == "nve" else None,
        max_displacement=as_float(disp),
        max_volume_change=(
            as_float(config.max_volume_change) if ensemble == "npt_nose_hoover" else None
        ),
    )


def _ke_atoms(state):
    return 0.5 * jnp.sum(state.momentum**2, axis=-1) / jnp.reshape(state.mass, (-1,))


def reference(state, box_fn):
    """Per-replica references at the start of a chunk: ``(H, V)`` (NVE energy, NPT volume)."""
    h = state.energy + jnp.sum(_ke_atoms(state)) if hasattr(state, "energy") else 0.0
    box = box_fn(state)
    v = jnp.abs(jnp.linalg.det(box)) if box is not None else 0.0
    return jnp.asarray(h, state.position.dtype), jnp.asarray(v, state.position.dtype)


def make_step_check(system, box_fn, limits: HealthLimits):
    """``check(old, new, ref) -> (code int32, atom int32, value)`` for one replica's step.

    ``ref`` is :func:`reference` of the chunk's start state (a drift reference ``H`` that the
    runner keeps from the start of the run, and the chunk's start volume ``V``).
    """
    pbc = jnp.asarray(system.pbc, bool)
    periodic, fractional = system.periodic, system.fractional

    def displacement(old, new):
        d = new.position - old.position
        if not periodic:
            return d
        box = box_fn(new)
        box = system.box if box is None else box
        cell = jnp.asarray(box).T  # rows
        f = d if fractional else d @ jnp.linalg.inv(cell)
        f = f - jnp.where(pbc, jnp.round(f), 0.0)
        return f @ cell

    def check(old, new, ref):
        h0, v0 = ref
        dtype = new.position.dtype
        n = new.position.shape[0]
        cands = []  # (code, fail, atom, value) in order of precedence

        if limits.finite:
            for code, x in ((1, new.position), (2, new.momentum), (3, new.force)):
                bad = ~jnp.all(jnp.isfinite(x), axis=-1)
                cands.append((code, jnp.any(bad), jnp.argmax(bad), jnp.asarray(jnp.nan, dtype)))
            if hasattr(new, "energy"):
                bad = ~jnp.isfinite(new.energy)
                cands.append((4, bad, jnp.asarray(0), jnp.asarray(jnp.nan, dtype)))
        ke = _ke_atoms(new)
        if limits.max_displacement is not None:
            dist = jnp.sqrt(jnp.sum(displacement(old, new) ** 2, axis=-1))
            worst = jnp.argmax(jnp.where(jnp.isfinite(dist), dist, jnp.inf))
            cands.append((5, dist[worst] > limits.max_displacement, worst, dist[worst]))
        if limits.max_temperature is not None:
            temp = 2.0 * jnp.sum(ke) / (3.0 * n * units.kB)
            cands.append((6, temp > limits.max_temperature, jnp.argmax(ke), temp))
        if limits.max_energy_drift is not None and hasattr(new, "energy"):
            drift = jnp.abs(new.energy + jnp.sum(ke) - h0) / n
            cands.append((7, drift > limits.max_energy_drift, jnp.argmax(ke), drift))
        if limits.max_volume_change is not None:
            ratio = jnp.abs(jnp.linalg.det(box_fn(new))) / v0
            f = limits.max_volume_change
            bad = (ratio > f) | (ratio < 1.0 / f)
            cands.append((8, bad, jnp.argmax(ke), ratio))
        code, atom, value = jnp.int32(0), jnp.int32(0), jnp.asarray(0.0, dtype)
        for c, fail, a, v in reversed(cands):  # the first failing check wins
            code = jnp.where(fail, jnp.int32(c), code)
            atom = jnp.where(fail, jnp.asarray(a, jnp.int32), atom)
            value = jnp.where(fail, jnp.asarray(v, dtype), value)
        return code, atom, value

    return check


def raise_unstable(bad, start_step: int, limits: HealthLimits, batched: bool):
    """Raise :class:`SimulationUnstable` from a chunk's carried failure ``bad`` =
    ``(index, code, atom, value, replica)`` (host arrays; ``index`` within the chunk)."""
    index, code, atom, value, replica = (x.item() for x in jax.device_get(bad))
    check = CHECKS[int(code)]
    limit = limits.limit(check)
    replica = int(replica) if batched else None
    raise SimulationUnstable(check, start_step + int(index) + 1, atom, value, limit, replica)
