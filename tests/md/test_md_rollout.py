"""Long differentiable rollouts (float64): gradients against finite differences, equality with
the non-differentiable runners, the cell derivative with wrapped positions, overflow errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

from tace_jax.md import (
    NeighborListOverflow,
    Simulation,
    initial_momenta,
    md_system,
    rollout,
)
from tace_jax.md.observables import pressure
from tace_jax.testing import MorsePotential

H = 1e-5


@pytest.fixture(scope="module")
def pot():
    return MorsePotential(atomic_numbers=(1, 8, 14), cutoff=4.0, dtype="float64", r0=1.5)


@pytest.fixture(scope="module")
def si(pot):
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.02, seed=1)
    s = md_system(pot, atoms)
    nbrs = s.neighbor_fn.allocate(s.positions)
    p0 = jnp.asarray(initial_momenta(atoms, 600.0, seed=0))
    return atoms, s, nbrs, p0


def _fd(f, x, h=H):
    return (f(x + h) - f(x - h)) / (2 * h)


def _mean_epot(s, nbrs, p0, steps, every, ensemble="nve", **kw):
    def f(lam):
        out = rollout(s, nbrs, (s.positions, lam * p0), steps, ensemble, every, timestep=1.0, **kw)[
            1
        ]
        return jnp.mean(out["epot"])

    return f


def test_long_gradient_reverse_forward_fd(si):
    """200 steps in ⌈√200⌉ = 15 checkpointed segments (13 full + a remainder of 5):
    reverse-mode gradient = forward-mode = central FD."""
    _, s, nbrs, p0 = si
    f = jax.jit(_mean_epot(s, nbrs, p0, 200, None))
    g = jax.grad(f)(1.0)
    t = jax.jvp(f, (1.0,), (1.0,))[1]
    fd = _fd(f, 1.0)
    assert abs(g) > 1e-3
    np.testing.assert_allclose(g, fd, rtol=1e-5)
    np.testing.assert_allclose(t, g, rtol=1e-10)


@pytest.mark.slow
def test_segment_lengths_agree(si):
    """Plain scan, segments with a remainder, the default: same values and gradients."""
    _, s, nbrs, p0 = si
    fs = [jax.jit(_mean_epot(s, nbrs, p0, 100, k)) for k in (0, 7, None)]
    vals = [(f(1.0), jax.grad(f)(1.0)) for f in fs]
    for v, g in vals[1:]:
        np.testing.assert_allclose(v, vals[0][0], rtol=1e-12)
        np.testing.assert_allclose(g, vals[0][1], rtol=1e-10)


@pytest.mark.slow
def test_10000_step_gradient_fd(si):
    """10,000 Langevin steps (fixed key; friction 0.1/fs keeps the chaotic growth of the
    sensitivities bounded, an NVE gradient over 10 ps grows like e^{λt}): gradient = FD."""
    _, s, nbrs, p0 = si
    f = jax.jit(_mean_epot(s, nbrs, p0, 10_000, None, "langevin", friction=0.1, temperature=600.0))
    g = jax.grad(f)(1.0)
    fd = _fd(f, 1.0)
    assert abs(g) > 1e-2
    np.testing.assert_allclose(g, fd, rtol=1e-6)


@pytest.mark.parametrize("ensemble", ["langevin", "nose_hoover"])
def test_thermostats_match_runner(pot, ensemble):
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.05, seed=3)
    sim = Simulation(
        pot, atoms, ensemble=ensemble, temperature=500.0, timestep=1.0, seed=7, tau_t=20.0
    )
    state0, nbrs0 = sim.state, sim.nbrs
    steps = 60
    sim.run(steps, log_interval=25, progress=False)  # chunks 25 + 25 + 10
    final, obs = jax.jit(
        lambda st: rollout(sim.system, nbrs0, st, steps, ensemble, 8, config=sim.config)
    )(state0)
    moved = float(jnp.max(jnp.abs(final.position - state0.position)))
    assert moved > 1e-2
    np.testing.assert_allclose(final.position, sim.state.position, rtol=0, atol=1e-11)
    np.testing.assert_allclose(final.momentum, sim.state.momentum, rtol=0, atol=1e-11)
    np.testing.assert_allclose(obs["ekin"][-1], sim.observe()["ekin"], rtol=1e-11)


@pytest.mark.slow
def test_strain_gradient_of_pressure_with_wrapping(si):
    """d<P>/dε (Nosé–Hoover, 40 steps) with atoms crossing the cell faces = FD."""
    atoms, s, nbrs, p0 = si
    R0 = jnp.asarray(atoms.get_positions()) - 0.05  # atoms at the origin sit near a face

    def obs_fn(st, nb, efn, box):
        return {"p": pressure(efn, st.position, nb, box, st.momentum, st.mass)}

    def run(eps):
        return rollout(
            s, nbrs, (R0, p0), 40, "nose_hoover", strain=eps, observe=obs_fn, timestep=1.0
        )

    f = jax.jit(lambda eps: jnp.mean(run(eps)[1]["p"]))
    final, _ = jax.jit(run)(jnp.zeros((3, 3)))
    frac = np.asarray(final.position) @ np.linalg.inv(atoms.cell.array)
    assert frac.min() >= 0 and frac.max() < 1  # wrapped ...
    assert np.abs(np.asarray(final.position) - np.asarray(R0)).max() > 1.0  # ... across a face
    g = jax.grad(f)(jnp.zeros((3, 3)))
    for direction in (jnp.eye(3), jnp.zeros((3, 3)).at[0, 1].set(1.0).at[1, 0].set(1.0)):
        fd = (f(H * direction) - f(-H * direction)) / (2 * H)
        np.testing.assert_allclose(jnp.sum(g * direction), fd, rtol=1e-5, atol=1e-9)


def test_overflow_raises(pot, si):
    atoms, _, _, p0 = si
    s = md_system(pot, atoms, capacity_multiplier=1.0)
    nbrs = s.neighbor_fn.allocate(s.positions)
    squeeze = -0.15 * jnp.eye(3)  # 40 % denser than where the list was sized
    args = (s, nbrs, (s.positions, p0), 2, "nve", 0)
    with pytest.raises(NeighborListOverflow, match="overflowed"):
        rollout(*args, strain=squeeze)
    with pytest.raises(NeighborListOverflow):  # reverse mode, outside jit
        jax.grad(lambda e: jnp.sum(rollout(*args, strain=e)[1]["ekin"]))(squeeze)
    with pytest.raises(Exception, match="overflowed"):  # under jit: raised by a host callback
        jax.block_until_ready(jax.jit(lambda e: rollout(*args, strain=e)[1]["ekin"])(squeeze))
    _, obs = rollout(*args, strain=squeeze, check_overflow=False)
    assert bool(jnp.all(obs["overflow"]))
