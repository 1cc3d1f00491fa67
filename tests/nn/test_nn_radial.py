"""Bessel basis, polynomial envelope and ZBL."""

from __future__ import annotations

import math

import ase.data
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.nn import bessel_basis, polynomial_envelope, radial_features, zbl_node_energy
from tace_jax.nn.zbl import COVALENT_RADII


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


def test_zbl():
    assert np.array_equal(COVALENT_RADII, np.asarray(ase.data.covalent_radii))
    numbers = jnp.array([1, 8, 22, 0])  # last node: padding
    senders = jnp.array([0, 1, 2, 1, 3])
    receivers = jnp.array([1, 0, 1, 2, 3])
    mask = jnp.array([True, True, True, True, False])
    r = jnp.array([0.7, 0.7, 1.1, 1.1, 1e-9], jnp.float64)
    e = zbl_node_energy(r, numbers, senders, receivers, mask, 4)

    def pair(zi, zj, d):
        a = 0.4543 * 0.529 / (zi**0.3 + zj**0.3)
        x = d / a
        phi = 0.1818 * np.exp(-3.2 * x) + 0.5099 * np.exp(-0.9423 * x)
        phi += 0.2802 * np.exp(-0.4028 * x) + 0.02817 * np.exp(-0.2016 * x)
        rmax = COVALENT_RADII[zi] + COVALENT_RADII[zj]
        y = d / rmax
        env = (1 - 21 * y**5 + 35 * y**6 - 15 * y**7) * (y < 1)
        return 14.3996 * zi * zj / d * phi * env

    want = np.array(
        [
            0.5 * pair(8, 1, 0.7),
            0.5 * (pair(1, 8, 0.7) + pair(22, 8, 1.1)),
            0.5 * pair(8, 22, 1.1),
            0,
        ]
    )
    np.testing.assert_allclose(e, want, rtol=1e-13)
    # finite gradients with a padding edge of length ~0; zero beyond r_max
    g = jax.grad(lambda rr: zbl_node_energy(rr, numbers, senders, receivers, mask, 4).sum())(r)
    assert np.all(np.isfinite(np.asarray(g))) and float(g[4]) == 0.0
    far = zbl_node_energy(jnp.full(5, 3.0), numbers, senders, receivers, mask, 4)
    assert np.all(np.asarray(far) == 0.0)
