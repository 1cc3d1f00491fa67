"""Batched replicas (float64): replica k of a padded, vmapped batch equals a single rollout of
structure k with seed k; padding atoms neither move nor change anything; clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk, molecule

from tace_jax.md import initial_momenta, md_system, rollout
from tace_jax.md.replicas import replica_batch, rollout_replicas
from tace_jax.testing import MorsePotential

KW = dict(timestep=1.0, temperature=600.0, friction=0.02)


@pytest.fixture(scope="module")
def pot():
    return MorsePotential(atomic_numbers=(14,), cutoff=4.0, dtype="float64", r0=2.35, depth=0.5)


def _structures():
    a = bulk("Si", "diamond", 5.43, cubic=True)  # 8 atoms
    a.rattle(0.05, seed=1)
    b = bulk("Si", "diamond", 5.43)  # 2 atoms, a cell smaller than the cutoff
    b.rattle(0.05, seed=2)
    return a, b


def _single(pot, atoms, seed, steps, ensemble):
    s = md_system(pot, atoms)
    nb = s.neighbor_fn.allocate(s.positions)
    p = jnp.asarray(initial_momenta(atoms, 600.0, seed))
    key = jax.random.PRNGKey(seed)
    return jax.jit(lambda: rollout(s, nb, (s.positions, p), steps, ensemble, key=key, **KW))()


def _compare(batch, final, obs, k, single, atol=1e-10):
    n = batch.sizes[k]
    f1, o1 = single
    np.testing.assert_allclose(final.position[k, :n], f1.position, rtol=0, atol=atol)
    np.testing.assert_allclose(final.momentum[k, :n], f1.momentum, rtol=0, atol=atol)
    np.testing.assert_allclose(obs["epot"][k], o1["epot"], rtol=0, atol=atol)
    np.testing.assert_allclose(obs["temperature"][k], o1["temperature"], rtol=1e-10)
    # padding atoms did not move and carry no momentum
    np.testing.assert_array_equal(final.position[k, n:], batch.positions[k, n:])
    np.testing.assert_array_equal(final.momentum[k, n:], 0.0)


@pytest.mark.slow
def test_padded_nve_replicas_equal_single_runs(pot):
    """An 8-atom and a 2-atom cell in a bucket of 10: each replica = its own single run."""
    a, b = _structures()
    batch = replica_batch(pot, [a, b], seeds=[3, 4], temperature=600.0, bucket=10)
    assert batch.bucket == 10 and batch.sizes == (8, 2)
    final, obs = jax.jit(lambda: rollout_replicas(batch, 30, "nve", **KW))()
    assert obs["epot"].shape == (2, 30) and not bool(jnp.any(obs["overflow"]))
    moved = jnp.max(jnp.abs(final.position[:, :2] - batch.positions[:, :2]))
    assert float(moved) > 1e-2
    for k, (atoms, seed) in enumerate([(a, 3), (b, 4)]):
        _compare(batch, final, obs, k, _single(pot, atoms, seed, 30, "nve"))


@pytest.mark.slow
def test_langevin_seeds_and_sizes_and_padding_changes_nothing(pot):
    """Langevin: the same structure under two seeds and a smaller one; each replica = its
    single run (same noise on the real atoms whatever the bucket), the two seeds differ,
    and a larger bucket gives the same numbers."""
    a, b = _structures()
    structs, seeds = [a, a, b], [5, 6, 7]
    batch = replica_batch(pot, structs, seeds=seeds, temperature=600.0)
    wide = replica_batch(pot, structs, seeds=seeds, temperature=600.0, bucket=13)
    run = lambda bt: jax.jit(lambda: rollout_replicas(bt, 40, "langevin", **KW))()
    final, obs = run(batch)
    final_w, obs_w = run(wide)
    for k, (atoms, seed) in enumerate(zip(structs, seeds)):
        _compare(batch, final, obs, k, _single(pot, atoms, seed, 40, "langevin"))
        n = batch.sizes[k]
        np.testing.assert_array_equal(final_w.position[k, n:], wide.positions[k, n:])
        np.testing.assert_array_equal(final_w.momentum[k, n:], 0.0)
        np.testing.assert_allclose(final_w.position[k, :n], final.position[k, :n], atol=1e-12)
        np.testing.assert_allclose(obs_w["epot"][k], obs["epot"][k], atol=1e-12)
    assert float(jnp.max(jnp.abs(final.position[0] - final.position[1]))) > 1e-2


@pytest.mark.slow
def test_gradient_through_replicas(pot):
    """d(Σ_k ⟨E_pot⟩_k)/d(depth scale) of the batch = sum of the single-run gradients."""
    a, b = _structures()
    batch = replica_batch(pot, [a, b], seeds=[1, 2], temperature=600.0, bucket=9)
    v = pot.variables
    mk = lambda t: {**v, "params": {**v["params"], "depth": t * v["params"]["depth"]}}
    f = lambda t: jnp.sum(
        jnp.mean(rollout_replicas(batch, 20, "nve", variables=mk(t), **KW)[1]["epot"], axis=1)
    )
    g = jax.jit(jax.grad(f))(1.0)
    fd = (jax.jit(f)(1.0 + 1e-5) - jax.jit(f)(1.0 - 1e-5)) / 2e-5
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    assert abs(float(g)) > 0.1


def test_errors(pot):
    a, b = _structures()
    with pytest.raises(ValueError, match="bucket 4"):
        replica_batch(pot, [a, b], bucket=4)
    with pytest.raises(ValueError, match="pbc differs"):
        replica_batch(pot, [a, molecule("H2O").copy()])
    with pytest.raises(ValueError, match="2 seeds for 1"):
        replica_batch(pot, [a], seeds=[1, 2])
    batch = replica_batch(pot, [a, b])
    with pytest.raises(ValueError, match="Nosé–Hoover"):
        rollout_replicas(batch, 2, "nose_hoover")
