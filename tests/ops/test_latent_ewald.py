"""Latent Ewald Summation energy (docs/theory.md §4): independent checks.

Reference values come from a direct numpy evaluation of the §4 formulas, pymatgen's
``EwaldSummation`` and the rock-salt Madelung constant.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf, erfc

from tace_jax.ops import (
    NORM_FACTOR_V010,
    ewald_kgrid,
    kgrid_fits,
    latent_ewald,
    latent_ewald_graph,
)
from tace_jax.ops.ewald_periodic import num_kvectors
from tace_jax.testing import assert_no_recompile, random_o3

NF = 90.4756


def _cell(rng, kind):
    if kind == "cubic":
        return np.eye(3) * 10.3
    return np.array([[9.7, 0.0, 0.0], [2.1, 8.9, 0.0], [-1.3, 1.7, 10.9]]) + 0.2 * rng.normal(
        size=(3, 3)
    )


def _system(rng, n=7, kind="triclinic"):
    cell = _cell(rng, kind)
    x = rng.uniform(-0.2, 1.2, size=(n, 3)) @ cell  # some atoms outside the cell
    q = rng.normal(size=n)
    return q - q.mean(), x, cell


def _numpy_recip(q, x, cell, sigma, dl, nf=NF, remove_self=True):
    """§4 literally: per-axis N_k, half-space with the first non-zero n positive, weight 2."""
    g = 2 * np.pi * np.linalg.inv(cell).T
    nk = [max(1, int(np.linalg.norm(a) / dl)) for a in cell]
    kc2 = (2 * np.pi / dl) ** 2
    tot = 0.0
    for n in itertools.product(*[range(-m, m + 1) for m in nk]):
        nz = [v for v in n if v != 0]
        if not nz or nz[0] < 0:
            continue
        k = np.array(n) @ g
        k2 = k @ k
        if k2 > kc2:
            continue
        s = np.sum(q * np.exp(1j * (x @ k)))
        tot += 2 * np.exp(-0.5 * sigma**2 * k2) / k2 * abs(s) ** 2
    e = nf / abs(np.linalg.det(cell)) * tot
    if remove_self:
        e -= nf * np.sum(q * q) / (sigma * (2 * np.pi) ** 1.5)
    return e


def _numpy_pairs(q, x, sigma, nf=NF):
    e = 0.0
    for i in range(len(q)):
        for j in range(len(q)):
            if i != j:
                r = np.linalg.norm(x[i] - x[j])
                e += 0.5 * q[i] * q[j] * erf(r / (math.sqrt(2) * sigma)) / r
    return nf / (2 * np.pi) * e


@pytest.mark.parametrize("kind", ["cubic", "triclinic"])
@pytest.mark.parametrize("sigma,dl", [(1.0, 2.0), (0.7, 1.3)])
def test_periodic_equals_numpy_formula(rng, kind, sigma, dl):
    q, x, cell = _system(rng, 6, kind)
    for remove in (True, False):
        e = latent_ewald(q, x, cell, True, sigma=sigma, dl=dl, remove_self_interaction=remove)
        ref = _numpy_recip(q, x, cell, sigma, dl, remove_self=remove)
        np.testing.assert_allclose(float(e), ref, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("kind", ["cubic", "triclinic"])
def test_periodic_equals_pymatgen_reciprocal(rng, kind):
    from pymatgen.analysis.ewald import EwaldSummation
    from pymatgen.core import Lattice, Structure

    q, x, cell = _system(rng, 6, kind)
    sigma, dl = 1.2, 1.5
    struct = Structure(
        Lattice(cell), ["H"] * len(q), x, coords_are_cartesian=True, site_properties={"charge": q}
    )
    ew = EwaldSummation(struct, eta=1 / (2 * sigma**2), recip_space_cut=2 * math.pi / dl)
    nf = 2 * math.pi * EwaldSummation.CONV_FACT  # pymatgen's 1/(4πε₀), times 2π
    e_full = latent_ewald(q, x, cell, True, sigma=sigma, dl=dl, remove_self_interaction=False,
                          norm_factor=nf)  # fmt: skip
    np.testing.assert_allclose(float(e_full), ew.reciprocal_space_energy, rtol=1e-10)
    e_noself = latent_ewald(q, x, cell, True, sigma=sigma, dl=dl, norm_factor=nf)
    np.testing.assert_allclose(float(e_noself - e_full), ew.point_energy, rtol=1e-10)
    # the default constant differs from CODATA's by < 1e-6 relative
    e_def = latent_ewald(q, x, cell, True, sigma=sigma, dl=dl, remove_self_interaction=False)
    np.testing.assert_allclose(float(e_def), ew.reciprocal_space_energy, rtol=2e-6)


@pytest.mark.parametrize("remove", [True, False])
def test_nonperiodic_equals_double_loop(rng, remove):
    q, x, _ = _system(rng, 6)
    sigma = 0.9
    e = latent_ewald(q, x, np.zeros((3, 3)), False, sigma=sigma, remove_self_interaction=remove)
    ref = _numpy_pairs(q, x, sigma)
    if not remove:
        ref += NF * np.sum(q * q) / (sigma * (2 * np.pi) ** 1.5)
    np.testing.assert_allclose(float(e), ref, rtol=1e-12)
    # the periodic branch is ignored for molecules: an arbitrary cell does not matter
    e2 = latent_ewald(q, x, np.eye(3) * 3, [False] * 3, sigma=sigma,
                      remove_self_interaction=remove)  # fmt: skip
    np.testing.assert_allclose(float(e2), float(e), rtol=1e-14)


def test_chunked_equals_dense(rng):
    q, x, _ = _system(rng, 37)
    x = x.copy()
    x[5] = x[3]  # coincident atoms: finite energy and gradient
    zero = np.zeros((3, 3))
    f = lambda chunk: jax.value_and_grad(
        lambda q_, x_: latent_ewald(q_, x_, zero, False, pair_chunk=chunk), argnums=(0, 1)
    )(q, x)
    e0, (gq0, gx0) = f(0)
    assert np.isfinite(gx0).all()
    for chunk in (5, 36):
        e1, (gq1, gx1) = f(chunk)
        np.testing.assert_allclose(e1, e0, rtol=1e-13)
        np.testing.assert_allclose(gq1, gq0, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(gx1, gx0, rtol=1e-12, atol=1e-13)


def _real_space(q, x, cell, sigma, nimg):
    e = 0.0
    a = 1 / (math.sqrt(2) * sigma)
    for n in itertools.product(range(-nimg, nimg + 1), repeat=3):
        t = np.array(n) @ cell
        d = x[:, None, :] - x[None, :, :] + t
        r = np.linalg.norm(d, axis=-1)
        if n == (0, 0, 0):
            np.fill_diagonal(r, np.inf)
        e += 0.5 * np.sum(q[:, None] * q[None, :] * erfc(a * r) / r)
    return NF / (2 * np.pi) * e


@pytest.mark.parametrize("sigma,dl", [(0.8, 0.65), (1.3, 1.05)])
def test_madelung_rock_salt(sigma, dl):
    a = 5.64
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    x = np.concatenate([base, base + 0.5]) * a
    q = np.array([1.0] * 4 + [-1.0] * 4)
    cell = np.eye(3) * a
    e_recip_self = latent_ewald(q, x, cell, True, sigma=sigma, dl=dl)  # recip − self
    e = float(e_recip_self) + _real_space(q, x, cell, sigma, nimg=3)
    madelung = -e * (a / 2) / (4 * NF / (2 * np.pi))
    assert abs(madelung - 1.747565) < 1e-4, madelung


def _fd(f, x, h=1e-5):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (float(f(xp)) - float(f(xm))) / (2 * h)
    return g


@pytest.mark.parametrize("periodic", [True, False])
def test_forces_equal_finite_differences(rng, periodic):
    q, x, cell = _system(rng, 6)
    grid = ewald_kgrid(cell)
    e = lambda x_: latent_ewald(q, x_, cell, periodic, kgrid=grid if periodic else None)
    forces = -np.asarray(jax.grad(e)(x))
    np.testing.assert_allclose(forces, -_fd(e, x), rtol=1e-7, atol=1e-8)
    # charges too
    eq = lambda q_: latent_ewald(q_, x, cell, periodic)
    np.testing.assert_allclose(jax.grad(eq)(q), _fd(eq, q), rtol=1e-7, atol=1e-8)


def test_stress_equals_finite_differences(rng):
    q, x, cell = _system(rng, 6)
    grid = ewald_kgrid(cell, headroom=0.1)

    def e_strain(eps):
        d = jnp.eye(3) + eps
        return latent_ewald(q, x @ d, cell @ d, True, kgrid=grid)

    vol = abs(np.linalg.det(cell))
    stress = np.asarray(jax.grad(e_strain)(jnp.zeros((3, 3)))) / vol
    ref = _fd(lambda eps: e_strain(jnp.asarray(eps)), np.zeros((3, 3))) / vol
    np.testing.assert_allclose(stress, ref, rtol=1e-7, atol=1e-9)
    # the cell gradient (through L^{-1} and V) agrees with the strain derivative
    g_cell = jax.grad(lambda c: latent_ewald(q, x, c, True, kgrid=grid))(jnp.asarray(cell))
    g_pos = jax.grad(lambda p: latent_ewald(q, p, cell, True, kgrid=grid))(jnp.asarray(x))
    virial = np.asarray(x.T @ g_pos + cell.T @ g_cell)
    np.testing.assert_allclose(virial / vol, stress, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("periodic", [True, False])
def test_invariances(rng, key, periodic):
    q, x, cell = _system(rng, 6)
    e0 = float(latent_ewald(q, x, cell, periodic))
    rot = np.asarray(random_o3(key))
    e_rot = float(latent_ewald(q, x @ rot.T, cell @ rot.T, periodic))
    e_tr = float(latent_ewald(q, x + np.array([0.3, -1.7, 2.2]), cell, periodic))
    np.testing.assert_allclose([e_rot, e_tr], [e0, e0], rtol=1e-11)
    if periodic:
        shifts = rng.integers(-2, 3, size=(len(q), 3))
        e_wrap = float(latent_ewald(q, x + shifts @ cell, cell, True))
        np.testing.assert_allclose(e_wrap, e0, rtol=1e-10)


def test_supercell_doubles_energy(rng):
    q, x, cell = _system(rng, 6)
    cell2 = cell.copy()
    cell2[0] *= 2
    x2 = np.concatenate([x, x + cell[0]])
    q2 = np.concatenate([q, q])
    for remove in (True, False):
        e1 = latent_ewald(q, x, cell, True, remove_self_interaction=remove)
        e2 = latent_ewald(q2, x2, cell2, True, remove_self_interaction=remove)
        np.testing.assert_allclose(float(e2), 2 * float(e1), rtol=1e-11)


def test_no_recompile_when_cell_moves_within_grid(rng):
    q, x, cell = _system(rng, 6)
    cell_b = cell * 1.04 + 0.05 * rng.normal(size=(3, 3))
    grid = ewald_kgrid(np.stack([cell, cell_b]), headroom=0.05)
    assert kgrid_fits(cell, grid) and kgrid_fits(cell_b, grid)
    assert not kgrid_fits(cell * 2, grid)
    fn = lambda q_, x_, c_: latent_ewald(q_, x_, c_, True, kgrid=grid)
    outs = assert_no_recompile(fn, (q, x, cell), (q, x * 1.04, cell_b), max_traces=1)
    # a grid larger than needed gives exactly the reference k-set
    np.testing.assert_allclose(outs[0], latent_ewald(q, x, cell, True), rtol=1e-12)
    np.testing.assert_allclose(outs[1], latent_ewald(q, x * 1.04, cell_b, True), rtol=1e-12)


def test_kgrid_helpers():
    cell = np.diag([12.0, 5.0, 2.9])
    assert ewald_kgrid(cell, 2.0) == (6, 2, 1)
    assert ewald_kgrid(cell, 2.0, headroom=0.1) == (6, 2, 1)
    assert ewald_kgrid(cell, 2.0, headroom=0.2) == (7, 3, 1)
    assert num_kvectors((6, 2, 1)) == 7 * 5 * 3
    batch = np.stack([cell, np.diag([4.0, 20.0, 4.0]), np.zeros((3, 3))])
    pbc = np.array([[True] * 3, [True] * 3, [False] * 3])
    assert ewald_kgrid(batch, 2.0, pbc=pbc) == (6, 10, 2)
    assert kgrid_fits(batch, (6, 10, 2), pbc=pbc) and not kgrid_fits(batch, (6, 9, 2), pbc=pbc)


def test_mixed_batch_and_padding(rng):
    mols = [_system(rng, 5), _system(rng, 6, "cubic"), _system(rng, 7)]
    pbcs = [False, True, True]
    n_pad = 3
    q = np.concatenate([m[0] for m in mols] + [np.full(n_pad, 5.0)])  # padding charge ignored
    x = np.concatenate([m[1] for m in mols] + [np.zeros((n_pad, 3))])
    graph = np.concatenate([np.full(len(m[0]), g) for g, m in enumerate(mols)] + [[3] * n_pad])
    mask = np.arange(len(q)) < len(q) - n_pad
    cells = np.stack([np.zeros((3, 3)), mols[1][2], mols[2][2], np.zeros((3, 3))])
    pbc = np.array([[p] * 3 for p in pbcs] + [[False] * 3])
    grid = ewald_kgrid(cells, pbc=pbc)

    @jax.jit
    def energy(q_, x_, c_):
        return latent_ewald_graph(q_, x_, c_, pbc, graph, mask, 4, grid)

    e = energy(q, x, cells)
    ref = [float(latent_ewald(m[0], m[1], m[2], p)) for m, p in zip(mols, pbcs)]
    np.testing.assert_allclose(e[:3], ref, rtol=1e-11)
    assert float(e[3]) == 0.0
    grads = jax.grad(lambda *a: energy(*a).sum(), argnums=(0, 1, 2))(q, x, cells)
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()
    assert np.all(np.asarray(grads[1])[~mask] == 0) and np.all(np.asarray(grads[0])[~mask] == 0)
    # chunked pair sum inside a batch
    e_chunk = latent_ewald_graph(q, x, cells, pbc, graph, mask, 4, grid, pair_chunk=4)
    np.testing.assert_allclose(e_chunk, e, rtol=1e-12)
    # traced pbc: both forms evaluated and selected per graph
    e_tr = jax.jit(lambda p: latent_ewald_graph(q, x, cells, p, graph, mask, 4, grid))(pbc)
    np.testing.assert_allclose(e_tr, e, rtol=1e-12)


def test_bad_inputs(rng):
    q, x, cell = _system(rng, 4)
    with pytest.raises(ValueError, match="slabs"):
        latent_ewald(q, x, cell, [True, True, False])
    with pytest.raises(ValueError, match="structure 1"):
        latent_ewald_graph(q, x, np.stack([cell, cell]), [[True] * 3, [True, False, True]],
                           [0, 0, 1, 1], [True] * 4, 2)  # fmt: skip
    with pytest.raises(ValueError, match="volume"):
        latent_ewald(q, x, np.zeros((3, 3)), True)
    with pytest.raises(ValueError, match="kgrid"):
        jax.jit(lambda c: latent_ewald(q, x, c, True))(cell)


def test_norm_factor_and_float32(rng):
    q, x, cell = _system(rng, 6)
    for p in (True, False):
        e = float(latent_ewald(q, x, cell, p))
        e_old = float(latent_ewald(q, x, cell, p, norm_factor=NORM_FACTOR_V010))
        np.testing.assert_allclose(e_old / e, NORM_FACTOR_V010 / NF, rtol=1e-12)
        e32 = latent_ewald(q.astype(np.float32), x.astype(np.float32), cell, p, dtype="float32")
        assert e32.dtype == jnp.float32
        np.testing.assert_allclose(float(e32), e, rtol=2e-5, atol=1e-5)
