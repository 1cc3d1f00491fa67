"""Differentiable NVE trajectories: gradients of trajectory observables.

:func:`nve_rollout` integrates ``steps`` velocity-Verlet steps with ``lax.scan`` and returns
observables that are differentiable (reverse or forward mode) with respect to the initial
positions and momenta, the model variables, and a strain of the cell. The neighbour list is
updated inside the scan with a fixed capacity; the ``overflow`` output says whether that capacity
was exceeded (then reallocate and repeat; gradients of an overflowed rollout are meaningless).

Example (gradient of the final kinetic energy w.r.t. a scale on the initial velocities)::

    system = md_system(potential, atoms)
    nbrs = system.neighbor_fn.allocate(system.positions)
    f = lambda lam: nve_rollout(system, nbrs, system.positions, lam * p0, 50)["final_ekin"]
    dke_dlam = jax.grad(f)(1.0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ase import units

from tace_jax.inference.jax_md import MDSystem

__all__ = ["nve_rollout"]


def nve_rollout(
    system: MDSystem,
    nbrs,
    positions,
    momenta,
    steps: int,
    timestep: float = 0.5,
    variables=None,
    strain=None,
) -> dict:
    """Run ``steps`` NVE steps and return differentiable observables.

    Args:
        system: from :func:`~tace_jax.inference.jax_md.md_system` (Cartesian coordinates).
        nbrs: an allocated neighbour list for ``positions``.
        positions: ``[N, 3]`` Å; momenta: ``[N, 3]`` amu·Å/(ASE time).
        steps: number of steps (static).
        timestep: fs.
        variables: model variables to use (default: the system's); pass traced variables to
            differentiate with respect to the model parameters.
        strain: optional ``[3, 3]`` strain ``ε`` applied to the cell and positions at the start
            (``x′ = x(1+ε)``, ``L′ = L(1+ε)``, rows), to differentiate w.r.t. deformations.

    Returns:
        dict with ``final_positions``, ``final_momenta``, ``final_ekin`` (eV), ``mean_epot`` (eV,
        over the ``steps`` new configurations), ``epot`` ``[steps]``, ``ekin`` ``[steps]``,
        ``overflow`` (bool).
    """
    if system.fractional:
        raise ValueError(
            "nve_rollout works in Cartesian coordinates (fractional_coordinates=False)"
        )
    energy_fn = system.energy_fn if variables is None else system.energy_fn_for(variables)
    dtype = system.parts.dtype
    R = jnp.asarray(positions, dtype)
    P = jnp.asarray(momenta, dtype)
    mass = jnp.asarray(system.masses, dtype)[:, None]
    box = None
    if strain is not None:
        eye = jnp.eye(3, dtype=dtype)
        deform = eye + jnp.asarray(strain, dtype)
        R = R @ deform
        if system.periodic:
            box = (jnp.asarray(system.cell, dtype) @ deform).T
    dt = jnp.asarray(timestep * units.fs, dtype)
    update = system.neighbor_fn.update

    def energy_and_force(x, nb):
        e, g = jax.value_and_grad(lambda y: energy_fn(y, neighbor=nb, box=box))(x)
        return e, -g

    nb0 = update(R, nbrs, box=box)
    _, f0 = energy_and_force(R, nb0)

    def step(carry, _):
        x, p, f, nb, ovf = carry
        p = p + 0.5 * dt * f
        x = x + dt * p / mass  # unwrapped: the neighbour lists handle images
        nb = update(x, nb, box=box)
        e, f = energy_and_force(x, nb)
        p = p + 0.5 * dt * f
        ekin = 0.5 * jnp.sum(p * p / mass)
        ovf = ovf | jnp.any(jnp.asarray(nb.did_buffer_overflow) != 0)
        return (x, p, f, nb, ovf), (e, ekin)

    ovf0 = jnp.any(jnp.asarray(nb0.did_buffer_overflow) != 0)
    (x, p, _, _, ovf), (epot, ekin) = jax.lax.scan(
        step, (R, P, f0, nb0, ovf0), None, length=int(steps)
    )
    return {
        "final_positions": x,
        "final_momenta": p,
        "final_ekin": ekin[-1],
        "mean_epot": jnp.mean(epot),
        "epot": epot,
        "ekin": ekin,
        "overflow": ovf,
    }
