"""The one MD configuration: ensemble, thermostat, barostat, neighbour list and output cadence.

:class:`MDConfig` is read by :func:`~tace_jax.md.integrators.make_integrator`,
:class:`~tace_jax.md.runners.Simulation`, :func:`~tace_jax.md.run.run_md` and the
``tace-jax md`` command (whose ``MDRunConfig`` extends it with file names). Every MD default is
written here and nowhere else.

Units: K, GPa, fs, 1/fs, Å.
"""

from __future__ import annotations

import dataclasses

from tace_jax.inference.jax_md import (
    DEFAULT_CAPACITY_MULTIPLIER,
    DEFAULT_NEIGHBOR_BACKEND,
    DEFAULT_SKIN,
)

__all__ = ["ENSEMBLES", "MDConfig", "canonical_ensemble", "md_config"]

ENSEMBLES = ("nve", "nvt_nose_hoover", "nvt_langevin", "npt_nose_hoover")
_ALIASES = {
    "nve": "nve",
    "nvt": "nvt_nose_hoover",
    "nose_hoover": "nvt_nose_hoover",
    "nvt_nose_hoover": "nvt_nose_hoover",
    "nvt_nh": "nvt_nose_hoover",
    "langevin": "nvt_langevin",
    "nvt_langevin": "nvt_langevin",
    "npt": "npt_nose_hoover",
    "npt_nose_hoover": "npt_nose_hoover",
}


def canonical_ensemble(name: str) -> str:
    """Map an ensemble name or alias (``nvt``, ``langevin``, ``npt``, …) to one of ENSEMBLES."""
    key = str(name).lower().replace("-", "_")
    if key not in _ALIASES:
        raise ValueError(f"unknown ensemble {name!r}; choose one of {sorted(_ALIASES)}")
    return _ALIASES[key]


@dataclasses.dataclass(frozen=True)
class MDConfig:
    """Options of one MD run (immutable; derive variants with :func:`dataclasses.replace`).

    Attributes:
        ensemble: ``nve``, ``nvt`` (Nosé–Hoover chain), ``langevin``, ``npt`` (Nosé–Hoover
            thermostat and barostat) or any alias accepted by :func:`canonical_ensemble`.
        timestep: fs.
        temperature: K (thermostats; NVE ignores it except for the initial velocities).
        init_temperature: K of the initial Maxwell–Boltzmann velocities when the atoms carry
            none (``None``: ``temperature``; 0 starts at rest).
        pressure: GPa (NPT).
        friction: Langevin friction, 1/fs.
        tau_t: thermostat time constant, fs.
        tau_p: barostat time constant, fs (NPT).
        chain_length: Nosé–Hoover chain length (thermostat and barostat).
        seed: seeds the initial velocities (replica ``k`` uses ``seed + k``) and the Langevin
            noise.
        skin: Verlet skin, Å (pairs are listed up to ``cutoff + skin``).
        capacity_multiplier: neighbour-list capacity margin.
        neighbor_backend: ``"auto"``, ``"jax_md"`` or ``"image"``
            (see :mod:`tace_jax.inference.md_neighbors`).
        log_interval: steps between observations.
        traj_interval: steps between trajectory frames (``None``: ``log_interval``).
        max_chunk: the most steps run in one compiled chunk.
        health_checks: run the health checks of :mod:`tace_jax.md.health` inside each chunk
            (``False``: none, and the chunk is compiled without them).
        check_finite: stop on a non-finite position, momentum, force or (NVE) energy.
        max_temperature: K, or ``"auto"`` (10× the target for thermostats, at least 100 K;
            ``max(1e4, 10 × initial)`` for NVE); ``None``: off.
        max_energy_drift: eV/atom, NVE ``|H − H(start)| / N``; ``None``: off.
        max_displacement: Å an atom may move in one step, or ``"auto"`` (``skin / 2``);
            ``None``: off.
        max_volume_change: NPT, the largest volume factor within one chunk; ``None``: off.

    Example:
        >>> cfg = MDConfig(ensemble="nvt", temperature=250.0)
        >>> cfg.canonical_ensemble
        'nvt_nose_hoover'
        >>> md_config(cfg, tau_t=20.0).tau_t
        20.0
    """

    ensemble: str = "nve"
    timestep: float = 0.5
    temperature: float = 300.0
    init_temperature: float | None = None
    pressure: float = 0.0
    friction: float = 0.01
    tau_t: float = 50.0
    tau_p: float = 500.0
    chain_length: int = 3
    seed: int = 0
    skin: float = DEFAULT_SKIN
    capacity_multiplier: float = DEFAULT_CAPACITY_MULTIPLIER
    neighbor_backend: str = DEFAULT_NEIGHBOR_BACKEND
    log_interval: int = 100
    traj_interval: int | None = None
    max_chunk: int = 1000
    health_checks: bool = True
    check_finite: bool = True
    max_temperature: float | str | None = "auto"
    max_energy_drift: float | None = 1.0
    max_displacement: float | str | None = "auto"
    max_volume_change: float | None = 1.5

    @property
    def canonical_ensemble(self) -> str:
        """:attr:`ensemble` as one of :data:`ENSEMBLES`."""
        return canonical_ensemble(self.ensemble)

    def validate(self, where: str = "MDConfig") -> MDConfig:
        """Check the values; returns ``self``.

        Raises:
            ValueError: naming ``where`` and the key, for an unknown ensemble, a non-positive
                time step, interval, skin or capacity, or a negative temperature.
        """

        def bad(key, msg):
            raise ValueError(f"{where}: key {key!r} {msg}")

        try:
            canonical_ensemble(self.ensemble)
        except ValueError as err:
            bad("ensemble", str(err))
        positive = ("timestep", "log_interval", "skin", "capacity_multiplier", "max_chunk")
        for key in positive:
            if not getattr(self, key) > 0:
                bad(key, f"must be > 0, got {getattr(self, key)}")
        if self.traj_interval is not None and not self.traj_interval > 0:
            bad("traj_interval", f"must be > 0, got {self.traj_interval}")
        for key in ("max_temperature", "max_displacement"):
            v = getattr(self, key)
            if v is not None and v != "auto" and not (isinstance(v, (int, float)) and v > 0):
                bad(key, f"must be > 0, 'auto' or null, got {v!r}")
        for key in ("max_energy_drift", "max_volume_change"):
            v = getattr(self, key)
            if v is not None and not v > 0:
                bad(key, f"must be > 0 or null, got {v!r}")
        if self.max_volume_change is not None and not self.max_volume_change > 1:
            bad("max_volume_change", f"must be > 1 (a factor), got {self.max_volume_change}")
        for key in ("temperature", "init_temperature"):
            v = getattr(self, key)
            if v is not None and v < 0:
                bad(key, f"must be >= 0, got {v}")
        return self


def md_config(config: MDConfig | None = None, **overrides) -> MDConfig:
    """``config`` (default :class:`MDConfig()`) with ``overrides`` (field names) applied.

    Raises:
        TypeError: an override that is not a field of :class:`MDConfig`.
    """
    config = MDConfig() if config is None else config
    if not isinstance(config, MDConfig):
        raise TypeError(f"config must be an MDConfig, got {type(config).__name__}")
    names = {f.name for f in dataclasses.fields(MDConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown MD option(s) {unknown}; MDConfig fields: {sorted(names)}")
    return dataclasses.replace(config, **overrides) if overrides else config
