"""EMA with torch_ema warm-up: decay_n = min(d, (1+n)/(10+n))."""

import jax.numpy as jnp
import numpy as np

from tace_jax.train.ema import ema_decay, ema_update


def test_decay_formula():
    for n in (1, 2, 5, 50, 1000, 10**6):
        assert np.isclose(float(ema_decay(n, 0.995)), min(0.995, (1 + n) / (10 + n)), rtol=1e-6)
    assert np.isclose(float(ema_decay(1, 0.99)), 2 / 11)


def test_ema_sequence_matches_manual():
    rng = np.random.default_rng(0)
    d = 0.9
    ema = {"w": jnp.asarray(rng.normal(size=3))}
    ref = np.asarray(ema["w"]).copy()
    for n in range(1, 30):
        p = rng.normal(size=3)
        ema = ema_update(ema, {"w": jnp.asarray(p)}, n, d)
        dn = min(d, (1 + n) / (10 + n))
        ref = ref - (1 - dn) * (ref - p)
    np.testing.assert_allclose(np.asarray(ema["w"]), ref, rtol=1e-6)


def test_ema_off():
    p = {"w": jnp.ones(2)}
    assert ema_update({"w": jnp.zeros(2)}, p, 3, None) is p
