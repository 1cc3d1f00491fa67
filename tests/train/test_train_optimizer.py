"""Optimiser (AdamW + clipping, injected learning rate) and schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tace_jax.train.optimizer import (
    PlateauScheduler,
    make_optimizer,
    make_schedule,
    set_learning_rate,
)


def test_matches_optax_adamw():
    params = {"w": jnp.asarray([1.0, -2.0, 3.0])}
    grads = {"w": jnp.asarray([0.1, 0.2, -0.3])}
    ours = make_optimizer(1e-2, weight_decay=1e-2, clip=None, dtype="float64")
    ref = optax.adamw(1e-2, weight_decay=1e-2)
    s1, s2 = ours.init(params), ref.init(params)
    p1 = p2 = params
    for _ in range(3):
        u1, s1 = ours.update(grads, s1, p1)
        u2, s2 = ref.update(grads, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    np.testing.assert_allclose(p1["w"], p2["w"], rtol=1e-12)


def test_set_learning_rate_and_clip():
    params = {"w": jnp.zeros(4)}
    opt = make_optimizer(1.0, weight_decay=1e-3, clip=0.5, dtype="float64")
    ref = optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(0.1, weight_decay=1e-3))
    s1, s2 = set_learning_rate(opt.init(params), 0.1), ref.init(params)
    p1 = p2 = params
    for g in (100.0, 0.01, 3.0):  # clipping changes Adam's moments after the first step
        grads = {"w": jnp.asarray([g, -g, 0.5 * g, 0.0])}
        u1, s1 = opt.update(grads, s1, p1)
        u2, s2 = ref.update(grads, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    np.testing.assert_allclose(p1["w"], p2["w"], rtol=1e-12)
    s1 = set_learning_rate(s1, 0.0)
    u, _ = opt.update({"w": jnp.ones(4)}, s1, p1)
    assert float(jnp.abs(u["w"]).max()) == 0.0


def test_schedules():
    cos = make_schedule("cosine", 1e-2, total_steps=100, warmup_steps=10, min_lr=1e-4)
    assert np.isclose(float(cos(0)), 1e-3) and np.isclose(float(cos(10)), 1e-2)
    assert np.isclose(float(cos(100)), 1e-4, rtol=1e-3)
    const = make_schedule("plateau", 1e-2, 100, warmup_steps=0)
    assert float(const(0)) == float(const(99)) == 1e-2
    warm = make_schedule("constant", 1e-2, 100, warmup_steps=4)
    assert float(warm(0)) < float(warm(2)) < float(warm(4)) == 1e-2
    assert jax.jit(cos)(jnp.asarray(5)).shape == ()


def test_plateau():
    p = PlateauScheduler(lr=1e-2, factor=0.5, patience=2, min_lr=2e-3)
    assert not p.step(1.0)  # best
    assert not p.step(1.0) and not p.step(1.0)  # 2 bad evals: patience not exceeded
    assert p.step(1.0) and p.scale == 0.5  # third bad eval
    assert not p.step(0.5) and p.num_bad == 0  # improvement resets
    for _ in range(3):
        p.step(0.5)
    assert p.scale == 0.25
    for _ in range(6):
        p.step(0.5)
    assert np.isclose(p.scale, 0.2)  # floored at min_lr / lr
    q = PlateauScheduler(lr=1e-2)
    q.load_state_dict(p.state_dict())
    assert q.state_dict() == p.state_dict()
    off = PlateauScheduler(lr=1.0, patience=0, enabled=False)
    assert not off.step(1.0) and not off.step(2.0) and off.scale == 1.0
