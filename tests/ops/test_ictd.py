"""Irreducible Cartesian tensor decomposition of a general rank-n tensor (docs/theory.md §1.3)."""

from __future__ import annotations

from collections import Counter
from functools import reduce

import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.ops import decompose, ictd_path_bases, ictd_paths, ictd_projectors, stf_projector
from tace_jax.testing import random_o3

ATOL = 1e-12
MULTIPLICITIES = {
    0: {0: 1},
    1: {1: 1},
    2: {2: 1, 1: 1, 0: 1},
    3: {3: 1, 2: 2, 1: 3, 0: 1},
    4: {4: 1, 3: 3, 2: 6, 1: 6, 0: 3},
    5: {5: 1, 4: 4, 3: 10, 2: 15, 1: 15, 0: 6},
}


@pytest.mark.parametrize("n", range(6))
def test_multiplicities_and_path_count(n):
    projs = ictd_projectors(n)
    assert dict(Counter(j for j, _ in projs)) == MULTIPLICITIES[n]
    assert len(projs) == len(ictd_paths(n)) == sum(MULTIPLICITIES[n].values())
    assert sum((2 * j + 1) * m for j, m in MULTIPLICITIES[n].items()) == 3**n


@pytest.mark.parametrize("n", range(6))
def test_paths_are_valid_coupling_sequences(n):
    paths = ictd_paths(n)
    assert len(set(paths)) == len(paths)
    for p in paths:
        assert len(p) == n + 1 and p[0] == 0
        for j, jn in zip(p[:-1], p[1:]):
            assert jn == 1 if j == 0 else jn in (j - 1, j, j + 1)
    assert paths[0] == tuple(range(n + 1))


@pytest.mark.parametrize("n", range(6))
def test_projectors_resolve_the_identity(n):
    projs = ictd_projectors(n)
    total = np.zeros((3**n, 3**n))
    for j, p in projs:
        assert p.shape == (3**n, 3**n) and p.dtype == np.float64
        np.testing.assert_allclose(p, p.T, rtol=0, atol=ATOL)
        if n <= 4:  # n = 5: implied by the orthonormal path bases (test below)
            np.testing.assert_allclose(p @ p, p, rtol=0, atol=ATOL)
        np.testing.assert_allclose(np.trace(p), 2 * j + 1, rtol=0, atol=ATOL)
        total += p
    np.testing.assert_allclose(total, np.eye(3**n), rtol=0, atol=ATOL)


@pytest.mark.parametrize("n", range(5))
def test_projectors_mutually_orthogonal(n):
    projs = [p for _, p in ictd_projectors(n)]
    for a in range(len(projs)):
        for b in range(a + 1, len(projs)):
            np.testing.assert_allclose(projs[a] @ projs[b], 0, rtol=0, atol=ATOL)


@pytest.mark.parametrize("n", range(6))
def test_path_bases_orthonormal_and_complete(n):
    bases = ictd_path_bases(n)
    e = np.concatenate([b for _, b in bases], axis=1)
    assert e.shape == (3**n, 3**n)
    np.testing.assert_allclose(e.T @ e, np.eye(3**n), rtol=0, atol=ATOL)
    assert [j for j, _ in bases] == [j for j, _ in ictd_projectors(n)]


@pytest.mark.parametrize("n", range(6))
def test_first_projector_is_stf(n):
    j, p = ictd_projectors(n)[0]
    assert j == n
    np.testing.assert_allclose(p, stf_projector(n), rtol=0, atol=ATOL)


@pytest.mark.parametrize("n", range(1, 5))
def test_projectors_commute_with_o3(n, key):
    for inversion in (False, True):
        rot = np.asarray(random_o3(key, inversion=inversion))
        rn = reduce(np.kron, [rot] * n)
        for _, p in ictd_projectors(n):
            np.testing.assert_allclose(p @ rn, rn @ p, rtol=0, atol=ATOL)
    # live check: a non-equivariant projector (onto the x-component) does not commute
    px = np.zeros((3, 3))
    px[0, 0] = 1.0
    assert np.abs(px @ rot - rot @ px).max() > 1e-3


def test_rank2_decomposition(rng):
    t = rng.normal(size=(4, 3, 3))
    parts = decompose(jnp.asarray(t), 2)
    assert [j for j, _ in parts] == [2, 1, 0]
    sym = 0.5 * (t + np.swapaxes(t, 1, 2))
    trace = np.trace(t, axis1=1, axis2=2)[:, None, None] * np.eye(3) / 3
    np.testing.assert_allclose(parts[0][1], sym - trace, rtol=0, atol=ATOL)
    np.testing.assert_allclose(parts[1][1], 0.5 * (t - np.swapaxes(t, 1, 2)), rtol=0, atol=ATOL)
    np.testing.assert_allclose(parts[2][1], trace, rtol=0, atol=ATOL)


@pytest.mark.parametrize("n", [3, 4])
def test_decompose_sums_back(n, rng):
    t = rng.normal(size=(2, *((3,) * n)))
    parts = decompose(jnp.asarray(t), n)
    assert all(p.shape == t.shape for _, p in parts)
    np.testing.assert_allclose(sum(p for _, p in parts), t, rtol=0, atol=ATOL)
    # the parts are mutually orthogonal
    flat = np.stack([np.asarray(p).reshape(2, -1) for _, p in parts])
    gram = np.einsum("pbi,qbi->bpq", flat, flat)
    off = gram - np.einsum("bpp->bp", gram)[..., None] * np.eye(len(parts))
    np.testing.assert_allclose(off, 0, rtol=0, atol=1e-11)


def test_negative_rank_raises():
    with pytest.raises(ValueError):
        ictd_paths(-1)
