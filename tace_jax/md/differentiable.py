"""Differentiable NVE trajectories: :func:`nve_rollout`, a thin alias of
:func:`~tace_jax.md.rollout.rollout` with ``ensemble="nve"`` returning a dict.

Example (gradient of the final kinetic energy w.r.t. a scale on the initial velocities)::

    system = md_system(potential, atoms)
    nbrs = system.neighbor_fn.allocate(system.positions)
    f = lambda lam: nve_rollout(system, nbrs, system.positions, lam * p0, 50)["final_ekin"]
    dke_dlam = jax.grad(f)(1.0)
"""

from __future__ import annotations

import jax.numpy as jnp

from tace_jax.inference.jax_md import MDSystem

from .rollout import rollout

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
    checkpoint_every: int | None = None,
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
        checkpoint_every: segment length of the checkpointed scans (see
            :func:`~tace_jax.md.rollout.rollout`).

    Returns:
        dict with ``final_positions`` (wrapped into a periodic cell), ``final_momenta``,
        ``final_ekin`` (eV), ``mean_epot`` (eV, over the ``steps`` new configurations), ``epot``
        ``[steps]``, ``ekin`` ``[steps]``, ``overflow`` (bool).

    Raises:
        NeighborListOverflow: the neighbour list overflowed during the rollout.
    """
    final, obs = rollout(
        system,
        nbrs,
        (positions, momenta),
        steps,
        "nve",
        checkpoint_every,
        variables=variables,
        strain=strain,
        timestep=timestep,
    )
    return {
        "final_positions": final.position,
        "final_momenta": final.momentum,
        "final_ekin": obs["ekin"][-1],
        "mean_epot": jnp.mean(obs["epot"]),
        "epot": obs["epot"],
        "ekin": obs["ekin"],
        "overflow": jnp.any(obs["overflow"]),
    }
