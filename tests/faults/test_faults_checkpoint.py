"""Checkpoint corruption at every file of a checkpoint.

For each file of the newest checkpoint and each fault (garbage, truncated, deleted) the
restore either yields exactly the saved state (a file orbax does not read back) or falls back
to the older checkpoint with a logged warning naming the step; it never returns wrong values,
and the older checkpoint's files are left untouched.
"""

import hashlib
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.train.checkpoint import Checkpointer
from tace_jax.train.optimizer import make_optimizer
from tace_jax.train.state import create_train_state


def _state(value):
    v = {"params": {"a": jnp.full((3,), value), "b": {"c": jnp.full((2, 2), -value)}}}
    return create_train_state(v, make_optimizer(1e-3), dtype="float32")


def _files(root):
    return sorted(
        os.path.relpath(os.path.join(r, f), root) for r, _, fs in os.walk(root) for f in fs
    )


def _digest(root):
    h = hashlib.sha256()
    for f in _files(root):
        h.update(f.encode())
        with open(os.path.join(root, f), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck") / "ck"
    ck = Checkpointer(root, keep=3)
    ck.save(2, _state(2.0), {"epoch": 0})
    ck.save(4, _state(4.0), {"epoch": 1})
    ck.close()
    return root


def _corrupt(path, fault):
    if fault == "garbage":
        with open(path, "wb") as f:
            f.write(b"\x00not a checkpoint\xff" * 4)
    elif fault == "truncated":
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
    else:
        os.remove(path)


def _same(a, b):
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def test_every_file_every_fault(pristine, tmp_path, caplog):
    files = _files(pristine / "4")
    assert len(files) >= 5 and "state/_METADATA" in files
    fell_back = []
    for rel in files:
        for fault in ("garbage", "truncated", "deleted"):
            root = tmp_path / f"{len(fell_back)}_{fault}_{rel.replace('/', '_')}"
            shutil.copytree(pristine, root)
            older = _digest(root / "2")
            _corrupt(root / "4" / rel, fault)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="tace_jax.train.checkpoint"):
                step, state, meta = Checkpointer(root).restore_latest(_state(0.0))
            if step == 4:  # a file orbax does not need to read back: the state is exact
                assert _same(state, _state(4.0)) and meta == {"epoch": 1}, (rel, fault)
                assert not [r for r in caplog.records if r.name == "tace_jax.train.checkpoint"]
            else:
                assert step == 2 and _same(state, _state(2.0)) and meta == {"epoch": 0}
                text = "\n".join(
                    r.getMessage() for r in caplog.records if r.name == "tace_jax.train.checkpoint"
                )
                assert "cannot restore checkpoint 4" in text and "trying an older one" in text
                fell_back.append((rel, fault))
            assert _digest(root / "2") == older, (rel, fault)  # nothing older lost
    corrupted = {r for r, _ in fell_back}
    assert {"state/_METADATA", "state/manifest.ocdbt", "meta/metadata"} <= corrupted


def test_corrupt_step_directory_name(pristine, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(pristine, root)
    (root / "7.orbax-checkpoint-tmp-123").mkdir()  # an interrupted save
    (root / "junk").write_text("not a checkpoint")
    step, state, _ = Checkpointer(root).restore_latest(_state(0.0))
    assert step == 4 and _same(state, _state(4.0))
    assert not (root / "7.orbax-checkpoint-tmp-123").exists()


def test_all_checkpoints_corrupt_is_an_error(pristine, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(pristine, root)
    for step in ("2", "4"):
        _corrupt(root / step / "state" / "_METADATA", "garbage")
    with pytest.raises(Exception, match="cannot restore"):
        Checkpointer(root).restore_latest(_state(0.0))


def test_resave_interrupted_keeps_the_checkpoint(pristine, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(pristine, root)
    ck = Checkpointer(root)

    def killed(*args, **kwargs):  # the process dies inside the orbax write
        raise KeyboardInterrupt

    ck.manager.save = killed
    with pytest.raises(KeyboardInterrupt):
        ck.save(4, _state(4.0), {"epoch": 1})
    assert Checkpointer(root).all_steps() == [2, 4]
