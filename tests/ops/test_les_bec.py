"""Born effective charges from LES (docs/theory.md §4): numpy finite differences, sum rules,
O(3) covariance and padded batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.ops import les_bec, les_bec_graph
from tace_jax.testing import random_o3

TRICLINIC = np.array([[7.7, 0.0, 0.0], [1.9, 6.9, 0.0], [-1.1, 1.4, 8.3]])


def _charge_fn(base, graph=None):
    """Position-dependent, rotation/translation-invariant charges; graph-local."""
    base = jnp.asarray(base)
    same = None if graph is None else jnp.asarray(graph)[:, None] == jnp.asarray(graph)[None]

    def fn(x):
        d = x[:, None, :] - x[None, :, :]
        w = jnp.exp(-jnp.sum(d * d, -1) / 9.0)
        if same is not None:
            w = jnp.where(same, w, 0.0)
        return base + 0.3 * jnp.sum(w, axis=1)

    return fn


def _np_polarization(q, x, cell, periodic):
    q = q - q.mean()
    if not periodic:
        return (q[:, None] * x).sum(0).astype(complex)
    s = x @ np.linalg.inv(cell)
    return (q[:, None] * np.exp(2j * np.pi * s)).sum(0) / (2j * np.pi)


def _np_bec(qfn, x, cell, periodic, h=1e-5):
    """§4 with numpy central differences of the (complex) polarization."""
    n = len(x)
    dp = np.zeros((n, 3, 3), complex)  # [i, a, β]
    for i in range(n):
        for b in range(3):
            xp, xm = x.copy(), x.copy()
            xp[i, b] += h
            xm[i, b] -= h
            pp = _np_polarization(np.asarray(qfn(xp)), xp, cell, periodic)
            pm = _np_polarization(np.asarray(qfn(xm)), xm, cell, periodic)
            dp[i, :, b] = (pp - pm) / (2 * h)
    if not periodic:
        return dp.real
    phase = np.exp(2j * np.pi * (x @ np.linalg.inv(cell)))  # [i, a]
    z_latt = (dp * np.conj(phase)[:, :, None]).real
    return np.einsum("ab,ibc->iac", cell.T, z_latt)


def _system(rng, n, periodic, cubic=False):
    cell = np.eye(3) * 8.1 if cubic else TRICLINIC
    x = rng.uniform(size=(n, 3)) @ cell
    return rng.normal(size=n), x, (cell if periodic else np.zeros((3, 3)))


@pytest.mark.parametrize("periodic,cubic", [(False, False), (True, True), (True, False)])
def test_constant_charges_give_diagonal(rng, periodic, cubic):
    q, x, cell = _system(rng, 6, periodic, cubic)
    z = np.asarray(les_bec(q, x, cell, periodic, epsilon_factor=2.0))
    ref = np.sqrt(2.0) * (q - q.mean())[:, None, None] * np.eye(3)
    np.testing.assert_allclose(z, ref, atol=1e-12)
    z_raw = np.asarray(les_bec(q, x, cell, periodic, remove_mean=False))
    np.testing.assert_allclose(z_raw, q[:, None, None] * np.eye(3), atol=1e-12)


@pytest.mark.parametrize("periodic", [False, True])
def test_position_dependent_charges_equal_numpy_fd(rng, periodic):
    q0, x, cell = _system(rng, 5, periodic)
    qfn = _charge_fn(q0)
    z = np.asarray(les_bec(qfn, x, cell, periodic))
    ref = _np_bec(qfn, x, cell, periodic)
    np.testing.assert_allclose(z, ref, rtol=1e-6, atol=1e-8)
    assert np.abs(z - (q0 - q0.mean())[:, None, None] * np.eye(3)).max() > 1e-3  # ∂q/∂x matters
    if not periodic:  # acoustic sum rule: translation-invariant, mean-removed charges
        np.testing.assert_allclose(z.sum(0), 0, atol=1e-12)


@pytest.mark.parametrize("periodic", [False, True])
def test_o3_covariance(rng, key, periodic):
    q0, x, cell = _system(rng, 6, periodic)
    qfn = _charge_fn(q0)
    rot = np.asarray(random_o3(key))
    z = np.asarray(les_bec(qfn, x, cell, periodic))
    z_rot = np.asarray(les_bec(qfn, x @ rot.T, cell @ rot.T, periodic))
    np.testing.assert_allclose(z_rot, np.einsum("ab,ibc,dc->iad", rot, z, rot), atol=1e-10)


def test_batch_with_padding_equals_single(rng):
    systems = [_system(rng, 4, False), _system(rng, 5, True, True), _system(rng, 3, True)]
    pbcs = [False, True, True]
    n_pad = 2
    q0 = np.concatenate([s[0] for s in systems] + [np.ones(n_pad)])
    x = np.concatenate([s[1] for s in systems] + [np.zeros((n_pad, 3))])
    graph = np.concatenate([np.full(len(s[0]), g) for g, s in enumerate(systems)] + [[3] * n_pad])
    mask = np.arange(len(q0)) < len(q0) - n_pad
    cells = np.stack([s[2] for s in systems] + [np.zeros((3, 3))])
    pbc = np.array([[p] * 3 for p in pbcs] + [[False] * 3])
    qfn = _charge_fn(q0, graph)
    z = jax.jit(lambda x_: les_bec_graph(qfn, x_, cells, pbc, graph, mask, 4))(x)
    z = np.asarray(z)
    assert np.all(z[~mask] == 0)
    start = 0
    for s, p in zip(systems, pbcs):
        n = len(s[0])
        ref = les_bec(_charge_fn(s[0]), s[1], s[2], p)
        np.testing.assert_allclose(z[start : start + n], ref, atol=1e-12)
        start += n


def test_mixed_pbc_raises(rng):
    q, x, cell = _system(rng, 3, True)
    with pytest.raises(ValueError, match="mixed pbc"):
        les_bec(q, x, cell, [True, False, True])
