"""STF basis ``Q_l`` and projector ``Π_l`` (docs/theory.md §1.2)."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest

from tace_jax.ops import harmonic_norm, stf_basis, stf_projector

LS = range(7)
ATOL = 1e-12


# ---- independent reference: symmetrise, then detrace (docs/theory.md §1.2, construction 1) -------


def _symmetrize(t: np.ndarray, l: int) -> np.ndarray:
    """Average a batch ``[B, 3, …, 3]`` over all permutations of its ``l`` tensor axes."""
    out = np.zeros_like(t)
    for p in itertools.permutations(range(1, l + 1)):
        out += np.transpose(t, (0, *p))
    return out / math.factorial(l)


def _pairings(positions: tuple[int, ...], k: int):
    """All sets of ``k`` disjoint (unordered) pairs from ``positions``."""
    if k == 0:
        yield ()
        return
    if len(positions) < 2 * k:
        return
    first, rest = positions[0], positions[1:]
    # pairs containing ``first``
    for j, other in enumerate(rest):
        remaining = rest[:j] + rest[j + 1 :]
        for tail in _pairings(remaining, k - 1):
            yield ((first, other), *tail)
    # sets without ``first``
    yield from _pairings(rest, k)


def _dfact(n: int) -> int:
    return 1 if n <= 0 else n * _dfact(n - 2)


def _detrace(s: np.ndarray, l: int) -> np.ndarray:
    """𝒟_l(S) = Σ_k (−1)^k (2l−2k−1)!!/(2l−1)!! Σ_{k disjoint pairs} δ…δ ⊗ (S traced k times)."""
    letters = "abcdefghij"[:l]
    out = np.zeros_like(s)
    for k in range(l // 2 + 1):
        coeff = (-1) ** k * _dfact(2 * l - 2 * k - 1) / _dfact(2 * l - 1)
        traced = s
        for _ in range(k):  # trace the first two tensor axes (the batch axis is 0)
            traced = np.trace(traced, axis1=1, axis2=2)
        for pairs in _pairings(tuple(range(l)), k):
            paired = {i for pair in pairs for i in pair}
            free = "".join(letters[i] for i in range(l) if i not in paired)
            ops = ["Z" + free] + [letters[i] + letters[j] for i, j in pairs]
            out += coeff * np.einsum(",".join(ops) + "->Z" + letters, traced, *[np.eye(3)] * k)
    return out


@functools.cache
def _reference_projector(l: int) -> np.ndarray:
    basis = np.eye(3**l).reshape(3**l, *((3,) * l))
    cols = _detrace(_symmetrize(basis, l), l).reshape(3**l, 3**l)
    return cols.T  # column i = Π e_i


def _is_stf(t: np.ndarray, l: int, atol: float = ATOL) -> bool:
    """``t``: ``[..., 3, …, 3]``; symmetric under every transposition, traceless in every pair."""
    lead = t.ndim - l
    for i, j in itertools.combinations(range(l), 2):
        axes = list(range(t.ndim))
        axes[lead + i], axes[lead + j] = axes[lead + j], axes[lead + i]
        if not np.allclose(t, np.transpose(t, axes), rtol=0, atol=atol):
            return False
        if not np.allclose(np.trace(t, axis1=lead + i, axis2=lead + j), 0, rtol=0, atol=atol):
            return False
    return True


# ---- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("l", LS)
def test_basis_orthonormal_and_projector(l):
    q, p = stf_basis(l), stf_projector(l)
    assert q.shape == (3**l, 2 * l + 1) and p.shape == (3**l, 3**l)
    assert q.dtype == np.float64 and p.dtype == np.float64
    np.testing.assert_allclose(q.T @ q, np.eye(2 * l + 1), rtol=0, atol=ATOL)
    np.testing.assert_allclose(q @ q.T, p, rtol=0, atol=ATOL)
    np.testing.assert_allclose(p, p.T, rtol=0, atol=ATOL)
    np.testing.assert_allclose(p @ p, p, rtol=0, atol=ATOL)
    assert np.linalg.matrix_rank(p, tol=1e-8) == 2 * l + 1
    np.testing.assert_allclose(np.trace(p), 2 * l + 1, rtol=0, atol=ATOL)


@pytest.mark.parametrize("l", LS)
def test_basis_is_stf(l):
    q = stf_basis(l)
    cols = q.T.reshape(2 * l + 1, *((3,) * l))
    assert _is_stf(cols, l)
    # the projector maps anything to an STF tensor and fixes STF tensors
    rng = np.random.default_rng(l)
    t = rng.normal(size=(4, 3**l))
    assert _is_stf((t @ stf_projector(l)).reshape(4, *((3,) * l)), l)
    np.testing.assert_allclose(stf_projector(l) @ q, q, rtol=0, atol=ATOL)


def test_stf_check_can_fail():
    """Guard for the helper: a symmetric tensor with a trace and a non-symmetric one fail."""
    assert not _is_stf(np.eye(3)[None], 2)
    assert not _is_stf(np.arange(9.0).reshape(1, 3, 3) - 4.0, 2)
    assert _is_stf(np.diag([1.0, -1.0, 0.0])[None], 2)


@pytest.mark.parametrize("l", range(6))
def test_projector_equals_symmetrize_then_detrace(l):
    np.testing.assert_allclose(stf_projector(l), _reference_projector(l), rtol=0, atol=ATOL)


def test_detrace_reference_is_nontrivial():
    """The reference is not the identity: it removes the trace of δ_ab and of δ_ab x_c."""
    p2 = _reference_projector(2)
    np.testing.assert_allclose(p2 @ np.eye(3).reshape(-1), 0, atol=ATOL)
    assert np.abs(p2 - np.eye(9)).max() > 0.1
    # ranks of the reference itself (2l+1), independent of the package
    for l in range(5):
        assert np.linalg.matrix_rank(_reference_projector(l), tol=1e-8) == 2 * l + 1


def test_low_rank_bases():
    np.testing.assert_array_equal(stf_basis(0), [[1.0]])
    np.testing.assert_array_equal(stf_basis(1), np.eye(3))


@pytest.mark.parametrize("l", [2, 4, 6])
def test_basis_is_deterministic_and_read_only(l):
    q = stf_basis(l)
    with pytest.raises(ValueError):
        q[0, 0] = 1.0
    stf_basis.cache_clear()
    np.testing.assert_array_equal(stf_basis(l), q)


@pytest.mark.parametrize("l", [7, 8])
def test_high_rank_basis_is_cheap_and_orthonormal(l):
    q = stf_basis(l)
    assert q.shape == (3**l, 2 * l + 1)
    np.testing.assert_allclose(q.T @ q, np.eye(2 * l + 1), rtol=0, atol=ATOL)
    # symmetric under swapping the first two and the last two axes, traceless in the first two
    t = q.T.reshape(2 * l + 1, 3, 3, 3 ** (l - 4), 3, 3)
    np.testing.assert_allclose(t, np.swapaxes(t, 1, 2), atol=ATOL)
    np.testing.assert_allclose(t, np.swapaxes(t, 4, 5), atol=ATOL)
    np.testing.assert_allclose(np.einsum("naaxbc->nxbc", t), 0, atol=ATOL)


def test_harmonic_norm_values():
    assert [harmonic_norm(l) for l in range(7)] == [1, 1, 3 / 2, 5 / 2, 35 / 8, 63 / 8, 231 / 16]


def test_negative_rank_raises():
    with pytest.raises(ValueError):
        stf_projector(-1)
    with pytest.raises(ValueError):
        stf_basis(-1)
