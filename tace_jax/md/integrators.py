"""Integrators for :class:`~tace_jax.inference.jax_md.MDSystem`: NVE, NVT (Nosé–Hoover chain,
Langevin) and NPT (jax-md's Nosé–Hoover barostat).

Units: Å, eV, amu, time in ASE units (``ase.units.fs``), ``kT`` in eV, pressure in eV/Å³.
jax-md's velocity-Verlet rounds ``dt`` to float32; :func:`nve` below keeps it in the position
dtype so float64 runs match other float64 integrators (e.g. ASE's ``VelocityVerlet``) to
rounding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
from ase import units
from jax_md import dataclasses as jmd_dataclasses
from jax_md import simulate

from .config import ENSEMBLES, MDConfig, canonical_ensemble, md_config

__all__ = [
    "ENSEMBLES",
    "Integrator",
    "NVEState",
    "nve",
    "make_integrator",
    "canonical_ensemble",
    "quiet_float64",
]


@contextlib.contextmanager
def quiet_float64():
    """Silence jax's "Explicitly requested dtype float64 … truncated" warnings while tracing.

    jax-md's thermostats sum kinetic energies with ``dtype=float64``
    (``jax_md.util.high_precision_sum``); without 64-bit JAX that request falls back to the
    float32 sum of a float32 run, which is what the run computes anyway.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Explicitly requested dtype float64")
        yield


@jmd_dataclasses.dataclass
class NVEState:
    """Velocity-Verlet state: jax-md's ``NVEState`` fields plus the potential ``energy`` (eV)
    at ``position``, computed with the forces at no extra cost (used by the health checks)."""

    position: jax.Array
    momentum: jax.Array
    force: jax.Array
    mass: jax.Array
    energy: jax.Array


def nve(energy_fn: Callable, shift_fn: Callable, dt: float):
    """Velocity Verlet with ``dt`` kept in the state's dtype (:class:`NVEState`).

    Returns:
        ``(init_fn(key, R, kT, mass, momenta=None, **kw), apply_fn(state, **kw))``.
    """

    def force_fn(R, **kwargs):
        e, g = jax.value_and_grad(energy_fn)(R, **kwargs)
        return -g, e

    def init_fn(key, R, kT=0.0, mass=1.0, momenta=None, **kwargs):
        mass = jnp.asarray(mass, R.dtype)
        mass = mass[:, None] if mass.ndim == 1 else mass
        if momenta is None:
            momenta = jnp.sqrt(mass * kT) * jax.random.normal(key, R.shape, R.dtype)
            momenta = momenta - jnp.mean(momenta, axis=0, keepdims=True)
        f, e = force_fn(R, **kwargs)
        return NVEState(R, jnp.asarray(momenta, R.dtype), f, mass, e)

    def apply_fn(state, **kwargs):
        h = jnp.asarray(dt, state.position.dtype)
        p = state.momentum + 0.5 * h * state.force
        R = shift_fn(state.position, h * p / state.mass, **kwargs)
        f, e = force_fn(R, **kwargs)
        return state.set(position=R, momentum=p + 0.5 * h * f, force=f, energy=e)

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
            energy for NVE, extended Hamiltonian for Nosé–Hoover); ``None`` for Langevin,
            which conserves nothing (observations report ``nan``).
        kT: eV; pressure: eV/Å³ (NPT); dt: ASE time units.
    """

    ensemble: str
    init_fn: Callable
    apply_fn: Callable
    box_fn: Callable
    invariant_fn: Callable | None
    kT: float
    pressure: float
    dt: float


def make_integrator(system, config: MDConfig | None = None, **overrides) -> Integrator:
    """Build the integrator of ``config.ensemble`` for an
    :class:`~tace_jax.inference.jax_md.MDSystem`.

    Args:
        system: from :func:`~tace_jax.inference.jax_md.md_system` (NPT needs fractional
            coordinates).
        config: the :class:`~tace_jax.md.config.MDConfig` (ensemble, ``timestep`` fs,
            ``temperature`` K, ``pressure`` GPa, ``friction`` 1/fs, ``tau_t``/``tau_p`` fs,
            ``chain_length``); default ``MDConfig()``.
        **overrides: :class:`~tace_jax.md.config.MDConfig` fields replacing those of ``config``.

    Raises:
        ValueError: unknown ensemble, or NPT without a periodic cell in fractional coordinates.
        TypeError: an override that is not an :class:`~tace_jax.md.config.MDConfig` field.
    """
    cfg = md_config(config, **overrides)
    ens = canonical_ensemble(cfg.ensemble)
    dt = float(cfg.timestep) * units.fs
    kT = float(cfg.temperature) * units.kB
    p_int = float(cfg.pressure) * units.GPa
    chain_length = int(cfg.chain_length)
    tau_t, tau_p = float(cfg.tau_t) * units.fs, float(cfg.tau_p) * units.fs
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
            energy_fn, shift_fn, dt, kT, chain_length=chain_length, tau=tau_t
        )

        def init_fn(key, R, momenta, neighbor):
            return init(key, R, mass=system.masses, momenta=momenta, neighbor=neighbor)

        def invariant_fn(state, neighbor):
            return simulate.nvt_nose_hoover_invariant(energy_fn, state, kT, neighbor=neighbor)

    elif ens == "nvt_langevin":
        gamma = float(cfg.friction) / units.fs
        init, apply = simulate.nvt_langevin(energy_fn, shift_fn, dt, kT, gamma=gamma)

        def init_fn(key, R, momenta, neighbor):
            return init(key, R, mass=system.masses, momenta=momenta, neighbor=neighbor)

        invariant_fn = None  # no conserved quantity (NaN is added outside jit)

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
            barostat_kwargs={"chain_length": chain_length, "tau": tau_p},
            thermostat_kwargs={"chain_length": chain_length, "tau": tau_t},
        )
        box_fn = simulate.npt_box

        def init_fn(key, R, momenta, neighbor):
            return init(key, R, system.box, mass=system.masses, momenta=momenta, neighbor=neighbor)

        def invariant_fn(state, neighbor):
            return simulate.npt_nose_hoover_invariant(
                energy_fn, state, p_int, kT, neighbor=neighbor
            )

    return Integrator(ens, init_fn, apply, box_fn, invariant_fn, kT, p_int, dt)
