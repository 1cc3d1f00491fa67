"""Full ↔ compressed layouts and the rank-2 ↔ (0, 1, 2) irreps split."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.ops import (
    irreps_to_matrix,
    matrix_to_irreps,
    stf_projector,
    to_compressed,
    to_full,
)
from tace_jax.testing import Rep, assert_equivariant

ATOL = 1e-12


@pytest.mark.parametrize("l", range(6))
def test_roundtrips(l, rng):
    c = jnp.asarray(rng.normal(size=(2, 3, 2 * l + 1)))
    full = to_full(c, l)
    assert full.shape == (2, 3, *((3,) * l))
    np.testing.assert_allclose(to_compressed(full, l), c, rtol=0, atol=ATOL)
    np.testing.assert_allclose(to_full(to_compressed(full, l), l), full, rtol=0, atol=ATOL)
    # the norm is preserved (orthonormal basis)
    np.testing.assert_allclose(
        np.sum(np.asarray(full).reshape(6, -1) ** 2, -1),
        np.sum(np.asarray(c).reshape(6, -1) ** 2, -1),
    )
    # a general (non-STF) tensor is projected: full(compressed(T)) = Π_l T
    t = rng.normal(size=(4, *((3,) * l)))
    back = to_full(to_compressed(jnp.asarray(t), l), l)
    np.testing.assert_allclose(
        np.asarray(back).reshape(4, -1), t.reshape(4, -1) @ stf_projector(l), rtol=0, atol=ATOL
    )


def test_rank0_and_rank1_conventions():
    s = jnp.arange(4.0)
    assert to_compressed(s, 0).shape == (4, 1)
    np.testing.assert_array_equal(to_full(to_compressed(s, 0), 0), s)
    v = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(to_compressed(v, 1), v)  # Q_1 = I: xyz kept
    with pytest.raises(ValueError):
        to_full(jnp.ones((2, 4)), 1)


def test_matrix_irreps_roundtrip_and_parts(rng):
    m = rng.normal(size=(5, 3, 3))
    a0, a1, a2 = matrix_to_irreps(jnp.asarray(m))
    assert a0.shape == (5,) and a1.shape == (5, 3) and a2.shape == (5, 5)
    np.testing.assert_allclose(irreps_to_matrix(a0, a1, a2), m, rtol=0, atol=ATOL)
    np.testing.assert_allclose(a0, np.trace(m, axis1=1, axis2=2) / math.sqrt(3), atol=ATOL)
    anti = 0.5 * (m - np.swapaxes(m, 1, 2))
    np.testing.assert_allclose(a1, np.stack([anti[:, 1, 2], anti[:, 2, 0], anti[:, 0, 1]], -1))
    # a1 is the vector w with anti·x = x × w... check via the Levi-Civita contraction
    eps = np.zeros((3, 3, 3))
    for i, j, k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
        eps[i, j, k], eps[i, k, j] = 1.0, -1.0
    np.testing.assert_allclose(a1, 0.5 * np.einsum("ijk,njk->ni", eps, m), atol=ATOL)
    sym = 0.5 * (m + np.swapaxes(m, 1, 2))
    np.testing.assert_allclose(
        irreps_to_matrix(a0, None, a2), sym, rtol=0, atol=ATOL
    )  # a1 = None: symmetric part
    np.testing.assert_allclose(
        to_full(a2, 2),
        sym - np.trace(m, axis1=1, axis2=2)[:, None, None] * np.eye(3) / 3,
        atol=ATOL,
    )
    # Frobenius norm splits: |M|² = a0² + 2|a1|² + |a2|²
    np.testing.assert_allclose(
        np.sum(m**2, axis=(1, 2)),
        np.asarray(a0) ** 2 + 2 * np.sum(np.asarray(a1) ** 2, -1) + np.sum(np.asarray(a2) ** 2, -1),
    )


def test_matrix_irreps_equivariance(key, rng):
    m = jnp.asarray(rng.normal(size=(4, 3, 3)))
    # a0 invariant, a1 an axial vector, a2 a natural-parity rank-2 tensor (compressed)
    out_ranks = (0, Rep(1, "vector", parity=-1), Rep(2, "compressed"))
    assert_equivariant(matrix_to_irreps, key, m, Rep(2, "full"), out_ranks)
    a = matrix_to_irreps(m)
    assert_equivariant(irreps_to_matrix, key, a, out_ranks, Rep(2, "full"))
    # a1 is *not* a polar vector: declaring it so fails (under the improper trial)
    with pytest.raises(AssertionError, match="improper"):
        assert_equivariant(matrix_to_irreps, key, m, 2, (0, 1, Rep(2, "compressed")))
