"""Device prefetch of the training batches (tace_jax.train.prefetch): same order, same
parameters as without it, errors raised in the caller, the thread stopped on early exit."""

import threading
import time

import jax
import numpy as np
import pytest

from tace_jax.testing import tiny_train_dict
from tace_jax.train import fit
from tace_jax.train.prefetch import device_prefetch


def _threads():
    return [t for t in threading.enumerate() if t.name == "tace-device-prefetch"]


@pytest.mark.parametrize("size", [0, 1, 3])
def test_order_and_values(size):
    items = [(np.full(2, k), k) for k in range(7)]
    got = list(device_prefetch(iter(items), lambda a: a * 10, size))
    assert [k for _, k in got] == list(range(7))
    assert all(np.array_equal(a, np.full(2, 10 * k)) for a, k in got)


def test_error_in_thread_reaches_caller():
    def items():
        yield (1, 0)
        raise ValueError("frame 3: bad batch")

    gen = device_prefetch(items(), lambda a: a, 2)
    assert next(gen) == (1, 0)
    with pytest.raises(ValueError, match="frame 3"):
        next(gen)

    def bad_place(a):
        raise RuntimeError("transfer failed")

    with pytest.raises(RuntimeError, match="transfer failed"):
        list(device_prefetch(iter([(1, 0)]), bad_place, 2))


def test_early_close_stops_thread():
    def endless():
        k = 0
        while True:
            yield (k, k)
            k += 1

    gen = device_prefetch(endless(), lambda a: a, 2)
    for _, k in gen:
        if k == 3:
            break
    gen.close()
    deadline = time.time() + 5
    while _threads() and time.time() < deadline:
        time.sleep(0.05)
    assert not _threads()


def test_fit_same_parameters_with_and_without_prefetch(tmp_path):
    kw = dict(max_steps=4, max_epochs=2, ema_decay=None, dtype="float64")
    a = fit(tiny_train_dict(tmp_path / "a", device_prefetch=0, **kw))
    b = fit(tiny_train_dict(tmp_path / "b", device_prefetch=2, **kw))
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not _threads()
