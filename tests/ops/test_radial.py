"""Bessel basis and polynomial envelope (docs/theory.md §2.3)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.ops import bessel_basis, polynomial_envelope, radial_features


def test_bessel_basis():
    r = jnp.array([0.5, 1.0, 4.9], jnp.float64)
    b = bessel_basis(r, 5.0, 8)
    n = np.arange(1, 9)
    want = (
        math.sqrt(2 / 5.0)
        * np.sin(n * np.pi * np.asarray(r)[:, None] / 5.0)
        / np.asarray(r)[:, None]
    )
    np.testing.assert_allclose(b, want, rtol=1e-14)


@pytest.mark.parametrize("p", [3, 5, 6])
def test_envelope(p):
    x = jnp.linspace(0.0, 1.5, 301, dtype=jnp.float64)
    f = polynomial_envelope(x, p)
    assert float(f[0]) == 1.0
    assert np.all(np.asarray(f[x >= 1.0]) == 0.0)
    # smooth at x = 1: value and first derivatives vanish from the left
    d = jax.vmap(jax.grad(lambda t: polynomial_envelope(t, p)))
    np.testing.assert_allclose(d(jnp.array([1.0 - 1e-9])), 0.0, atol=1e-6)
    if p == 5:
        xs = np.asarray(x[x < 1])
        np.testing.assert_allclose(f[x < 1], 1 - 21 * xs**5 + 35 * xs**6 - 15 * xs**7, atol=1e-14)


def test_radial_features():
    r = jnp.array([1.0, 5.5, 7.0], jnp.float64)
    e = radial_features(r, 6.0, 8, 5)
    np.testing.assert_allclose(
        e[:2], bessel_basis(r, 6.0, 8)[:2] * polynomial_envelope(r[:2] / 6.0, 5)[:, None]
    )
    assert np.all(np.asarray(e[2]) == 0.0)
