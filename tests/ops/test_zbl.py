"""ZBL pair repulsion (docs/theory.md §2.9)."""

from __future__ import annotations

import ase.data
import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.ops import COVALENT_RADII, zbl_node_energy


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
