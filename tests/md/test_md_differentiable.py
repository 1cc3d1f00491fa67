"""Gradients of NVE trajectory observables against central finite differences (float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk, molecule

from tace_jax.md import initial_momenta, md_system, nve_rollout
from tace_jax.testing import MorsePotential

STEPS = 25
H = 1e-5


@pytest.fixture(scope="module")
def pot():
    return MorsePotential(atomic_numbers=(1, 8, 14), cutoff=4.0, dtype="float64", r0=1.5)


def _setup(pot, atoms):
    s = md_system(pot, atoms)
    nbrs = s.neighbor_fn.allocate(s.positions)
    p0 = jnp.asarray(initial_momenta(atoms, 300.0, seed=0))
    return s, nbrs, p0


@pytest.mark.parametrize("kind", ["molecule", "periodic"])
def test_velocity_scale_gradient(pot, kind):
    atoms = molecule("H2O") if kind == "molecule" else bulk("Si", "diamond", 5.43, cubic=True)
    s, nbrs, p0 = _setup(pot, atoms)

    @jax.jit
    def final_ekin(lam):
        out = nve_rollout(s, nbrs, s.positions, lam * p0, STEPS)
        return out["final_ekin"], out["overflow"]

    g = jax.grad(lambda lam: final_ekin(lam)[0])(1.0)
    fd = (final_ekin(1.0 + H)[0] - final_ekin(1.0 - H)[0]) / (2 * H)
    assert not bool(final_ekin(1.0)[1])
    assert abs(g) > 1e-3
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_parameter_and_strain_gradients(pot):
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.02, seed=1)
    s, nbrs, p0 = _setup(pot, atoms)
    v = s.parts.variables
    rng = np.random.default_rng(0)
    direction = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape)), v)
    direction["constants"]["cutoff"] = jnp.zeros(())

    mean_epot = jax.jit(
        lambda vv, eps: nve_rollout(s, nbrs, s.positions, p0, STEPS, variables=vv, strain=eps)[
            "mean_epot"
        ]
    )
    zero = jnp.zeros((3, 3))
    gv, gs = jax.grad(mean_epot, argnums=(0, 1))(v, zero)
    dot = sum(
        jnp.vdot(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(gv), jax.tree_util.tree_leaves(direction))
    )
    shifted = lambda e: jax.tree_util.tree_map(lambda a, b: a + e * b, v, direction)
    fd = (mean_epot(shifted(H), zero) - mean_epot(shifted(-H), zero)) / (2 * H)
    np.testing.assert_allclose(dot, fd, rtol=1e-6)
    # isotropic strain: d<E>/dε along the identity
    e = jnp.eye(3)
    fd_s = (mean_epot(v, H * e) - mean_epot(v, -H * e)) / (2 * H)
    np.testing.assert_allclose(jnp.sum(gs * e), fd_s, rtol=1e-6)
