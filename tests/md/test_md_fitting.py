"""Observable fitting (float64): the direct (through the rollout) and DiffTRe (reweighting)
gradients of a trajectory average against finite differences and against each other, and the
fitting loop converging to a target, on 8 Si atoms with a Morse potential whose depth is
scaled by θ (Langevin, fixed noise key)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import units
from ase.build import bulk

from tace_jax.md import initial_momenta, md_system
from tace_jax.md.fitting import (
    Reference,
    covariance_gradient,
    direct_average,
    fit_observable,
    reweighted_average,
    sample_reference,
)
from tace_jax.md.integrators import NVEState
from tace_jax.testing import MorsePotential

KW = dict(ensemble="langevin", friction=0.05, temperature=600.0, timestep=2.0)
H = 1e-5


@pytest.fixture(scope="module")
def case():
    pot = MorsePotential(atomic_numbers=(14,), cutoff=4.0, dtype="float64", r0=2.35, depth=0.5)
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.02, seed=1)
    s = md_system(pot, atoms)
    nbrs = s.neighbor_fn.allocate(s.positions)
    p0 = jnp.asarray(initial_momenta(atoms, 600.0, seed=0))
    v = pot.variables

    def make_variables(theta):
        return {**v, "params": {**v["params"], "depth": theta * v["params"]["depth"]}}

    return s, nbrs, (s.positions, p0), make_variables


def u_per_atom(state, neighbor, energy_fn, box):
    return energy_fn(state.position, neighbor=neighbor) / state.position.shape[0]


def _fd(f, x, h=H):
    return (f(x + h) - f(x - h)) / (2 * h)


def test_reweighting_gradient_fd_on_given_frames(case):
    """On given frames (a rattled lattice): autodiff of the reweighted estimator = the
    −β·Cov form = its central FD; weights uniform and ESS 1 at the reference, the ESS drops
    and the estimate moves away from it, and it is the plain mean at the reference."""
    s, nbrs, st0, mk = case
    rng = np.random.default_rng(0)
    frames = jnp.asarray(s.positions[None] + rng.normal(0.0, 0.08, (24, 8, 3)))
    nbs = jax.vmap(lambda r: s.neighbor_fn.update(r, nbrs))(frames)
    energies = jax.jit(
        lambda th: jax.vmap(lambda r, nb: s.energy_fn_for(mk(th))(r, neighbor=nb))(frames, nbs)
    )
    u = energies(1.0)
    zeros = jnp.zeros_like(frames)
    states = NVEState(frames, zeros, zeros, jnp.ones((24, 8, 1)), u)
    ref = Reference(states, nbs, u, jnp.asarray(600.0 * units.kB), mk(1.0))
    rw = jax.jit(lambda th: reweighted_average(s, mk(th), ref, u_per_atom))
    (value, ess), g = jax.value_and_grad(rw, has_aux=True)(1.0)
    np.testing.assert_allclose(value, jnp.mean(u) / 8, rtol=1e-12)
    np.testing.assert_allclose(ess, 1.0, rtol=1e-12)
    cov = jax.jit(lambda th: covariance_gradient(s, th, mk, ref, u_per_atom))(1.0)
    # by hand: ∂U/∂θ is the pair energy (U is linear in θ), ∂O/∂θ = ∂U/∂θ / 8
    du = u - energies(0.0)
    by_hand = jnp.mean(du) / 8 - jnp.mean((u / 8 - jnp.mean(u / 8)) * du) / (600.0 * units.kB)
    assert abs(g) > 0.1
    np.testing.assert_allclose(cov, g, rtol=1e-10)
    np.testing.assert_allclose(by_hand, g, rtol=1e-10)
    np.testing.assert_allclose(_fd(lambda th: rw(th)[0], 1.0), g, rtol=1e-7)
    assert float(rw(1.05)[1]) < 0.999


@pytest.mark.slow
def test_difftre_gradient_equals_covariance_form_and_fd(case):
    """Autodiff of the reweighted estimator = −β·Cov form = its central FD; ESS is 1 at the
    reference and drops away from it."""
    s, nbrs, st0, mk = case
    ref = sample_reference(s, nbrs, st0, 200, variables=mk(1.0), discard=40, every=4, **KW)
    assert ref.num_frames == 40
    rw = jax.jit(lambda th: reweighted_average(s, mk(th), ref, u_per_atom))
    (value, ess), g = jax.value_and_grad(rw, has_aux=True)(1.0)
    np.testing.assert_allclose(value, jnp.mean(ref.energies) / 8, rtol=1e-12)
    np.testing.assert_allclose(ess, 1.0, rtol=1e-12)
    cov = jax.jit(lambda th: covariance_gradient(s, th, mk, ref, u_per_atom))(1.0)
    fd = _fd(lambda th: rw(th)[0], 1.0)
    assert abs(g) > 0.1
    np.testing.assert_allclose(cov, g, rtol=1e-10)
    np.testing.assert_allclose(g, fd, rtol=1e-7)
    assert 0.2 < float(rw(1.05)[1]) < 0.999


@pytest.mark.slow
def test_direct_gradient_fd_and_agreement_with_difftre(case):
    """d⟨U⟩/dθ through 2000 checkpointed Langevin steps: reverse mode = forward mode = central
    FD (float64). Both methods estimate the derivative of the canonical average, so the
    DiffTRe gradient of a reference run with the same noise agrees within the statistical
    error of a 4 ps trajectory (a few per cent), as does the FD of averages at θ ± 0.02."""
    s, nbrs, st0, mk = case
    steps, disc = 2000, 400
    f = jax.jit(
        lambda th: direct_average(
            s, nbrs, st0, steps, u_per_atom, variables=mk(th), discard=disc, **KW
        )
    )
    g = jax.grad(f)(1.0)
    assert abs(g) > 0.1
    np.testing.assert_allclose(g, _fd(f, 1.0), rtol=1e-6)
    np.testing.assert_allclose(jax.jvp(f, (1.0,), (1.0,))[1], g, rtol=1e-10)
    ref = sample_reference(s, nbrs, st0, steps, variables=mk(1.0), discard=disc, every=5, **KW)
    g_rw = jax.jit(lambda th: covariance_gradient(s, th, mk, ref, u_per_atom))(1.0)
    np.testing.assert_allclose(g_rw, g, rtol=0.05)
    np.testing.assert_allclose(_fd(f, 1.0, 0.02), g, rtol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "steps", "disc"), [("direct", 600, 100), ("difftre", 3000, 500)]
)
def test_fit_converges_to_target(case, method, steps, disc):
    """Fit the Morse depth scale so that ⟨U⟩/N matches the average of a run at θ = 1.2.

    Direct: the trajectory average is a deterministic function of θ, so θ → 1.2 exactly.
    DiffTRe (resampling below ESS 0.9): the reweighted estimate meets the target; θ lands
    within the statistical error, and a fresh trajectory at the fitted θ gives the target
    within that error. DiffTRe needs 6 ps (shorter runs are dominated by the initial
    relaxation, which reweighting does not see); the direct method fits the average of the
    given trajectory, here 1.2 ps (the gradient of a longer chaotic average is rough)."""
    s, nbrs, st0, mk = case
    avg = jax.jit(
        lambda th: direct_average(
            s, nbrs, st0, steps, u_per_atom, variables=mk(th), discard=disc, **KW
        )
    )
    target = float(avg(1.2))
    res = fit_observable(
        s, nbrs, st0, steps, u_per_atom, target, 1.0, mk, method=method, tol=1e-5,
        iterations=8, discard=disc, every=5, ess_min=0.9, **KW
    )  # fmt: skip
    assert res.converged, res.history
    assert abs(res.value - target) <= 1e-5
    assert len(res.history) >= 2  # it did move
    if method == "direct":
        np.testing.assert_allclose(res.theta, 1.2, atol=1e-4)
        assert res.references == 0
    else:
        assert res.references >= 1
        np.testing.assert_allclose(res.theta, 1.2, atol=0.02)
        np.testing.assert_allclose(avg(res.theta), target, atol=0.005)
