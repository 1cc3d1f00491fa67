"""Long differentiable MD rollouts (NVE, Langevin, Nosé–Hoover) with O(√N) gradient memory.

:func:`rollout` integrates ``steps`` steps of one ensemble with the very step functions of
:func:`~tace_jax.md.integrators.make_integrator` (jax-md's ``simulate.nvt_langevin`` and
``simulate.nvt_nose_hoover``, and the package's velocity Verlet), so for the same initial state
and key it follows the trajectory of :class:`~tace_jax.md.runners.Simulation` to round-off.

Memory: the steps are cut into segments of ``checkpoint_every`` steps (default ``⌈√steps⌉``);
an outer ``lax.scan`` runs the segments, each an inner ``lax.scan`` wrapped in
``jax.checkpoint``. Reverse mode then stores one carry per segment and the residuals of one
segment at a time: ``O(steps/L + L)`` states, ``O(√steps)`` at the default. Forward mode
(``jax.jvp``) works unchanged.

Cell derivative and wrapping: for a periodic cell in Cartesian coordinates the positions are
wrapped into the cell at every step (jax-md's ``periodic_general`` shift). A ``strain`` ``ε``
deforms the cell and the positions, ``x′ = x(1+ε)``, ``L′ = L(1+ε)`` (rows), and the strained
cell is the one used by the shift, the neighbour list and the energy. The wrap subtracts
``n·L′`` with integer ``n`` (zero derivative), so every interatomic vector
``x′ᵢ − x′ⱼ + s·L′`` keeps its derivative ``(xᵢ − xⱼ + s·L)`` with respect to ``ε`` whether or
not atoms were wrapped (docs/theory.md, stress as the strain derivative of the energy). The
tests check this against finite differences on a trajectory in which atoms cross the cell.

Neighbour lists: updated inside the scan with the capacity of ``nbrs``. An overflow at any step
makes the whole rollout (and its gradient) meaningless, so it raises
:class:`NeighborListOverflow`: at once when the flag is concrete (eager calls, ``jax.grad``
outside ``jit``), and from a host callback when traced under ``jit``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from ase import units

from tace_jax.inference.jax_md import MDSystem

from .config import MDConfig, md_config
from .integrators import make_integrator, quiet_float64

__all__ = ["NeighborListOverflow", "default_observe", "init_state", "rollout"]


class NeighborListOverflow(RuntimeError):
    """The neighbour list overflowed inside a differentiable rollout: reallocate ``nbrs`` with
    more capacity (``neighbor_fn.allocate(R, extra_capacity=...)``) and run again."""


_MSG = (
    "rollout: the neighbour list overflowed at step {step} of {steps}; its results and "
    "gradients are invalid. Allocate the list with more capacity "
    "(neighbor_fn.allocate(R, extra_capacity=...), or a larger capacity_multiplier) and rerun."
)


def _any_overflow(nb) -> jax.Array:
    return jnp.any(jnp.asarray(nb.did_buffer_overflow) != 0)


def default_observe(state, neighbor, energy_fn, box) -> dict:
    """Per-step observables: ``epot``, ``ekin`` (eV) and ``temperature`` (K, 3N degrees of
    freedom). Any ``observe(state, neighbor, energy_fn, box) -> pytree`` can replace it."""
    epot = getattr(state, "energy", None)
    if epot is None:
        epot = energy_fn(state.position, neighbor=neighbor)
    ekin = 0.5 * jnp.sum(state.momentum**2 / jnp.reshape(state.mass, (-1, 1)))
    n = state.position.shape[0]
    return {"epot": epot, "ekin": ekin, "temperature": 2.0 * ekin / (3.0 * n * units.kB)}


def _bound_system(system: MDSystem, variables, strain):
    """The system with ``variables`` and the strained box baked into energy and shift."""
    if system.fractional:
        raise ValueError("rollout works in Cartesian coordinates (fractional_coordinates=False)")
    dtype = system.parts.dtype
    energy_fn = system.energy_fn if variables is None else system.energy_fn_for(variables)
    deform, box = None, None
    if strain is not None:
        deform = jnp.eye(3, dtype=dtype) + jnp.asarray(strain, dtype)
        if system.periodic:
            box = (jnp.asarray(system.cell, dtype) @ deform).T
    base_shift = system.shift_fn

    def efn(R, neighbor=None, **kw):
        kw.pop("box", None)
        return energy_fn(R, neighbor=neighbor, box=box, **kw)

    def sfn(R, dR, **kw):
        if box is None:  # the runners' own shift (same values to the bit)
            return base_shift(R, dR)
        # wrap with plain jnp: jax-md's ``space.transform`` has a custom JVP whose box
        # derivative is not the derivative of the wrapped Cartesian position
        y = R + dR
        if not all(system.pbc):
            return y
        n = jax.lax.stop_gradient(jnp.floor(y @ jnp.linalg.inv(box.T)))
        return y - n @ box.T

    bound = dataclasses.replace(system, energy_fn=efn, shift_fn=sfn)
    return bound, deform, box


def init_state(
    system: MDSystem,
    nbrs,
    positions,
    momenta,
    ensemble: str = "nve",
    key=None,
    config: MDConfig | None = None,
    **overrides,
):
    """The integrator state of ``ensemble`` at ``positions``/``momenta`` (as
    :class:`~tace_jax.md.runners.Simulation` builds it); ``key`` seeds Langevin noise
    (default ``PRNGKey(0)``). Options as :func:`rollout`."""
    cfg = md_config(config, ensemble=ensemble, **overrides)
    integ = make_integrator(system, cfg)
    key = jax.random.PRNGKey(0) if key is None else key
    dtype = system.parts.dtype
    R, P = jnp.asarray(positions, dtype), jnp.asarray(momenta, dtype)
    with quiet_float64():
        return integ.init_fn(key, R, P, system.neighbor_fn.update(R, nbrs))


def _check(ovf, steps: int):
    """Raise :class:`NeighborListOverflow` for an overflow flag ``[steps]`` (or batched)."""

    def host(flags):
        flags = np.asarray(flags).reshape(-1, steps) if np.ndim(flags) else np.asarray([flags])
        hit = np.any(flags, axis=0)
        if hit.any():
            raise NeighborListOverflow(_MSG.format(step=int(np.argmax(hit)), steps=steps))

    if isinstance(ovf, jax.core.Tracer):  # under jit / vmap: check on the host at run time
        jax.debug.callback(host, ovf)
    else:  # eager, and under jax.grad / jax.jvp outside jit (boolean outputs stay concrete)
        host(np.asarray(ovf))


def rollout(
    system: MDSystem,
    nbrs,
    state,
    steps: int,
    ensemble: str = "nve",
    checkpoint_every: int | None = None,
    *,
    key=None,
    variables=None,
    strain=None,
    observe: Callable | None = None,
    check_overflow: bool = True,
    config: MDConfig | None = None,
    **overrides,
):
    """Integrate ``steps`` steps and return the final state and the stacked observables.

    Args:
        system: from :func:`~tace_jax.inference.jax_md.md_system` (Cartesian coordinates).
        nbrs: an allocated neighbour list (its capacity is kept for the whole rollout).
        state: the integrator state of ``ensemble`` (:func:`init_state`, or ``Simulation.state``
            to continue a runner exactly), or a ``(positions, momenta)`` pair (Å,
            amu·Å/ASE-time) from which the state is built inside, so that it is differentiable
            w.r.t. them, ``strain`` and ``variables``.
        steps: number of steps (static).
        ensemble: ``"nve"``, ``"langevin"`` or ``"nose_hoover"`` (or any alias of
            :func:`~tace_jax.md.config.canonical_ensemble`; not NPT).
        checkpoint_every: segment length ``L`` of the checkpointed inner scans (default
            ``⌈√steps⌉``; ``0`` runs one plain scan, memory linear in ``steps``).
        key: PRNG key of the Langevin noise when ``state`` is a pair (default ``PRNGKey(0)``;
            the same key gives the same noise, so the rollout is a deterministic function).
        variables: model variables (traced to differentiate w.r.t. the model parameters).
        strain: ``[3, 3]`` strain ``ε`` of cell and positions (see the module docstring).
        observe: ``observe(state, neighbor, energy_fn, box) -> pytree`` after every step
            (default :func:`default_observe`); ``energy_fn(R, neighbor)`` is bound to
            ``variables`` and the strained box, ``box`` is jax-md's (columns) or ``None``.
        check_overflow: raise :class:`NeighborListOverflow` on a neighbour-list overflow.
        config: an :class:`~tace_jax.md.config.MDConfig` (``timestep`` fs, ``temperature`` K,
            ``friction`` 1/fs, ``tau_t`` fs, ``chain_length``); ``**overrides`` replace fields.

    Returns:
        ``(final_state, observables)``: the observables stacked over the steps (leading axis
        ``steps``), plus ``"overflow"`` ``[steps]`` (bool).

    Raises:
        ValueError: fractional coordinates or NPT.
        NeighborListOverflow: the neighbour list overflowed (see the module docstring).
    """
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"rollout: steps must be >= 1, got {steps}")
    cfg = md_config(config, ensemble=ensemble, **overrides)
    if cfg.canonical_ensemble == "npt_nose_hoover":
        raise ValueError("rollout: NPT is not supported; use 'nve', 'langevin' or 'nose_hoover'")
    bound, deform, box = _bound_system(system, variables, strain)
    integ = make_integrator(bound, cfg)
    update = bound.neighbor_fn.update
    dtype = system.parts.dtype
    observe = default_observe if observe is None else observe

    with quiet_float64():
        if isinstance(state, (tuple, list)):
            R, P = (jnp.asarray(x, dtype) for x in state)
            if deform is not None:
                R = R @ deform
            key = jax.random.PRNGKey(0) if key is None else key
            nb0 = update(R, nbrs, box=box)
            state = integ.init_fn(key, R, P, nb0)
        else:
            nb0 = nbrs
            if deform is not None:  # strain a given state: deform and recompute the forces
                R = state.position @ deform
                nb0 = update(R, nbrs, box=box)
                fresh = integ.init_fn(jax.random.PRNGKey(0), R, state.momentum, nb0)
                state = state.set(position=R, force=fresh.force)
                if hasattr(state, "energy"):
                    state = state.set(energy=fresh.energy)
        ovf0 = _any_overflow(nb0)

        def body(carry, _):
            st, nb, ovf = carry
            nb = update(st.position, nb, box=box)
            st = integ.apply_fn(st, neighbor=nb)
            ovf = ovf | _any_overflow(nb)
            obs = observe(st, nb, bound.energy_fn, box)
            return (st, nb, ovf), (obs, ovf)

        def segment(carry, length):
            return jax.lax.scan(body, carry, None, length=length)

        carry = (state, nb0, ovf0)
        L = _segment_length(steps, checkpoint_every)
        if L == 0:
            carry, out = segment(carry, steps)
        else:
            n_seg, rest = divmod(steps, L)
            seg = jax.checkpoint(lambda c, _: segment(c, L))
            parts = []
            if n_seg:
                carry, out = jax.lax.scan(seg, carry, None, length=n_seg)
                parts.append(jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[2:]), out))
            if rest:
                carry, out = jax.checkpoint(lambda c: segment(c, rest))(carry)
                parts.append(out)
            out = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)
    final, obs_flags = carry[0], out
    obs, flags = obs_flags
    if check_overflow:
        _check(flags, steps)
    obs = dict(obs) if isinstance(obs, dict) else {"observables": obs}
    obs["overflow"] = flags
    return final, obs


def _segment_length(steps: int, checkpoint_every) -> int:
    if checkpoint_every is None:
        return max(1, math.isqrt(steps - 1) + 1) if steps > 1 else 1
    L = int(checkpoint_every)
    if L < 0:
        raise ValueError(f"rollout: checkpoint_every must be >= 0, got {checkpoint_every}")
    return min(L, steps)
