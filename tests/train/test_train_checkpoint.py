"""Orbax checkpoints: round trip, keep-last-k, interrupted saves are never picked."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.train.checkpoint import Checkpointer
from tace_jax.train.optimizer import make_optimizer
from tace_jax.train.state import create_train_state


def _state(value=1.0):
    v = {"params": {"a": jnp.full((3,), value), "b": {"c": jnp.zeros((2, 2))}}}
    return create_train_state(v, make_optimizer(1e-3), dtype="float32")


def test_roundtrip_and_keep(tmp_path):
    ck = Checkpointer(tmp_path / "ck", keep=2)
    for step in (1, 5, 9):
        st = _state(float(step)).replace(step=jnp.asarray(step, jnp.int32))
        ck.save(step, st, {"epoch": step, "best": float("inf"), "loader": {"seed": 0}})
    assert ck.all_steps() == [5, 9]
    step, st, meta = ck.restore_latest(_state())
    assert step == 9 and meta["epoch"] == 9 and meta["best"] == float("inf")
    np.testing.assert_array_equal(st.params["a"], np.full(3, 9.0, np.float32))
    assert st.params["a"].dtype == np.float32 and int(st.step) == 9
    assert jax.tree.structure(st) == jax.tree.structure(_state())
    ck.save(9, _state(7.0), {"epoch": 10})  # re-saving a step replaces it
    assert Checkpointer(tmp_path / "ck").restore(9, _state())[1]["epoch"] == 10


def test_partial_checkpoints_are_ignored(tmp_path):
    ck = Checkpointer(tmp_path / "ck", keep=3)
    ck.save(3, _state(3.0), {"epoch": 0})
    # an interrupted save of a newer step: orbax's temporary directory, half written
    tmp = tmp_path / "ck" / "7.orbax-checkpoint-tmp-1700000000"
    (tmp / "state").mkdir(parents=True)
    (tmp / "state" / "garbage").write_bytes(b"\x00" * 10)
    ck.manager.reload()  # orbax itself never lists temporary directories
    assert ck.all_steps() == [3] and ck.latest_step() == 3
    ck.close()
    ck2 = Checkpointer(tmp_path / "ck")
    assert ck2.all_steps() == [3]
    step, st, _ = ck2.restore_latest(_state())
    assert step == 3 and float(st.params["a"][0]) == 3.0
    assert not tmp.exists()  # cleaned up at start-up


def test_unreadable_latest_falls_back(tmp_path):
    ck = Checkpointer(tmp_path / "ck", keep=3)
    ck.save(2, _state(2.0), {"epoch": 0})
    ck.save(4, _state(4.0), {"epoch": 1})
    # corrupt the newest complete checkpoint (e.g. a disk error after finalisation)
    for root, _, files in os.walk(tmp_path / "ck" / "4" / "state"):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"corrupt")
    step, st, meta = Checkpointer(tmp_path / "ck").restore_latest(_state())
    assert step == 2 and meta["epoch"] == 0 and float(st.params["a"][0]) == 2.0


def test_empty_directory(tmp_path):
    assert Checkpointer(tmp_path / "none").restore_latest(_state()) is None
