"""Integrators for :class:`~tace_jax.md.jax_md.MDSystem`: NVE, NVT (Nosé–Hoover chain,
Langevin) and NPT (jax-md's Nosé–Hoover barostat).

Units: Å, eV, amu, time in ASE units (``ase.units.fs``), ``kT`` in eV, pressure in eV/Å³.
jax-md's velocity-Verlet rounds ``dt`` to float32; :func:`nve` below keeps it in the position
dtype so float64 runs match other float64 integrators (e.g. ASE's ``VelocityVerlet``) to
rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from ase import units
from jax_md import quantity, simulate

__all__ = ["ENSEMBLES", "Integrator", "nve", "make_integrator", "canonical_ensemble"]

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


def nve(energy_fn: Callable, shift_fn: Callable, dt: float):
    """Velocity Verlet with ``dt`` kept in the state's dtype (jax-md ``NVEState``).

    Returns:
        ``(init_fn(key, R, kT, mass, momenta=None, **kw), apply_fn(state, **kw))``.
    """
    force_fn = quantity.force(energy_fn)

    def init_fn(key, R, kT=0.0, mass=1.0, momenta=None, **kwargs):
        mass = jnp.asarray(mass, R.dtype)
        mass = mass[:, None] if mass.ndim == 1 else mass
        if momenta is None:
            momenta = jnp.sqrt(mass * kT) * jax.random.normal(key, R.shape, R.dtype)
            momenta = momenta - jnp.mean(momenta, axis=0, keepdims=True)
        return simulate.NVEState(R, jnp.asarray(momenta, R.dtype), force_fn(R, **kwargs), mass)

    def apply_fn(state, **kwargs):
        h = jnp.asarray(dt, state.position.dtype)
        p = state.momentum + 0.5 * h * state.force
        R = shift_fn(state.position, h * p / state.mass, **kwargs)
        f = force_fn(R, **kwargs)
        return state.set(position=R, momentum=p + 0.5 * h * f, force=f)

    return init_fn, apply_fn


@dataclasses.dataclass(frozen=True)
class Integrator:
    """An integrator bound to one system.

    Attributes:
        ensemble: one of :data:`ENSEMBLES`.
        init_fn: ``init_fn(key, R, momenta, neighbor) -> state``.
        apply_fn: ``apply_fn(state, neighbor) -> state``.
        box_fn: ``box_fn(state) -> box`` (jax-md columns) for NPT, ``None`` for a fixed cell.
        invariant_fn: ``invariant_fn(state, neighbor) -> eV``, the conserved quantity (total
            energy for NVE, extended Hamiltonian for Nosé–Hoover; ``nan`` for Langevin).
        kT: eV; pressure: eV/Å³ (NPT); dt: ASE time units.
    """

    ensemble: str
    init_fn: Callable
    apply_fn: Callable
    box_fn: Callable
    invariant_fn: Callable
    kT: float
    pressure: float
    dt: float


def make_integrator(
    system,
    ensemble: str = "nve",
    timestep: float = 0.5,
    temperature: float = 300.0,
    pressure: float = 0.0,
    friction: float = 0.01,
    tau_t: float = 50.0,
    tau_p: float = 500.0,
    chain_length: int = 3,
) -> Integrator:
    """Build the integrator of ``ensemble`` for an :class:`~tace_jax.md.jax_md.MDSystem`.

    Args:
        system: from :func:`~tace_jax.md.jax_md.md_system` (NPT needs fractional coordinates).
        ensemble: ``nve``, ``nvt``/``nvt_nose_hoover``, ``langevin``/``nvt_langevin``,
            ``npt``/``npt_nose_hoover``.
        timestep: fs.
        temperature: K (thermostats; NVE ignores it).
        pressure: GPa (NPT).
        friction: Langevin friction, 1/fs.
        tau_t, tau_p: thermostat and barostat time constants, fs.
        chain_length: Nosé–Hoover chain length.

    Raises:
        ValueError: unknown ensemble, or NPT without a periodic cell in fractional coordinates.
    """
    ens = canonical_ensemble(ensemble)
    dt = float(timestep) * units.fs
    kT = float(temperature) * units.kB
    p_int = float(pressure) * units.GPa
    energy_fn, shift_fn = system.energy_fn, system.shift_fn
    box_fn = lambda state: None  # fixed cell: the energy function's own

    if ens == "nve":
        init, apply = nve(energy_fn, shift_fn, dt)

        def init_fn(key, R, momenta, neighbor):
            return init(key, R, kT, system.masses, momenta=momenta, neighbor=neighbor)

        def invariant_fn(state, neighbor):
            ke = 0.5 * jnp.sum(state.momentum**2 / jnp.reshape(state.mass, (-1, 1)))
            return energy_fn(state.position, neighbor=neighbor) + ke

    elif ens == "nvt_nose_hoover":
        init, apply = simulate.nvt_nose_hoover(
            energy_fn, shift_fn, dt, kT, chain_length=chain_length, tau=float(tau_t) * units.fs
        )

        def init_fn(key, R, momenta, neighbor):
            return init(key, R, mass=system.masses, momenta=momenta, neighbor=neighbor)

        def invariant_fn(state, neighbor):
            return simulate.nvt_nose_hoover_invariant(energy_fn, state, kT, neighbor=neighbor)

    elif ens == "nvt_langevin":
        gamma = float(friction) / units.fs
        init, apply = simulate.nvt_langevin(energy_fn, shift_fn, dt, kT, gamma=gamma)

        def init_fn(key, R, momenta, neighbor):
            return init(key, R, mass=system.masses, momenta=momenta, neighbor=neighbor)

        def invariant_fn(state, neighbor):
            return jnp.asarray(jnp.nan, state.position.dtype)

    else:
        if not (system.fractional and system.periodic and bool(all(system.pbc))):
            raise ValueError(
                "NPT needs a fully periodic cell and fractional coordinates "
                "(md_system(..., fractional_coordinates=True))"
            )
        init, apply = simulate.npt_nose_hoover(
            energy_fn,
            shift_fn,
            dt,
            p_int,
            kT,
            barostat_kwargs={"chain_length": chain_length, "tau": float(tau_p) * units.fs},
            thermostat_kwargs={"chain_length": chain_length, "tau": float(tau_t) * units.fs},
        )
        box_fn = simulate.npt_box

        def init_fn(key, R, momenta, neighbor):
            return init(key, R, system.box, mass=system.masses, momenta=momenta, neighbor=neighbor)

        def invariant_fn(state, neighbor):
            return simulate.npt_nose_hoover_invariant(
                energy_fn, state, p_int, kT, neighbor=neighbor
            )

    return Integrator(ens, init_fn, apply, box_fn, invariant_fn, kT, p_int, dt)
