"""The training set-up (data, statistics, model, optimiser) without the loop."""

from __future__ import annotations

import contextlib

import jax
import numpy as np
import pytest

from tace_jax.models import Statistics
from tace_jax.testing import tiny_model
from tace_jax.train import ConfigError, config_from_dict
from tace_jax.train.prepare import to_model_statistics
from tace_jax.train.setup import TrainingSetup, setup_training

MODEL = tiny_model()


def _config(out, **kw):
    d = {
        "train_file": "bundled:rmd17_ethanol_train",
        "data_options": {"index": "0:12"},
        "valid_fraction": 0.25,
        "model": MODEL,
        "batch_size": 3,
        "max_epochs": 2,
        "output_dir": str(out),
        "progress": False,
    }
    d.update(kw)
    return config_from_dict(d)


@contextlib.contextmanager
def _x64_off():
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", True)


def test_setup_builds_everything_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    s = setup_training(_config(out))
    assert isinstance(s, TrainingSetup) and not out.exists()
    assert len(s.data.train) == 9 and len(s.data.valid) == 3
    assert s.model_cfg.atomic_numbers == (1, 6, 8) and s.num_devices == s.mesh.size
    assert s.steps_per_epoch == 3 and s.total_steps == 6
    assert set(s.loss_cfg.active) == {"energy", "forces"}
    assert np.shape(s.statistics.scale) == (1, 3)
    assert s.raw_statistics["atomic_numbers"] == [1, 6, 8]
    assert s.valid_loader is not None and s.test_loaders == {}
    batch = s.example_batch()
    assert isinstance(jax.tree.leaves(batch)[0], jax.Array)
    with pytest.raises(AttributeError):
        s.cfg = None  # frozen


def test_float64_without_x64_is_a_config_error(tmp_path):
    with _x64_off(), pytest.raises(ConfigError, match=r"'dtype'.*JAX_ENABLE_X64=1 tace-jax train"):
        setup_training(_config(tmp_path, dtype="float64"))


def test_to_model_statistics_without_edges():
    raw = {
        "atomic_energies": [[-1.0, -2.0]],
        "scale": [[1.0, 2.0]],
        "shift": [[0.0, 0.0]],
        "avg_num_neighbors": 0.0,
        "num_atoms": 3,
    }
    stats = to_model_statistics(raw)
    assert isinstance(stats, Statistics) and stats.avg_num_neighbors == 1.0
    assert stats.scale == ((1.0, 2.0),)


def test_model_keys_always_validated():
    with pytest.raises(ConfigError, match="unknown model key 'num_channels'.*num_channel"):
        config_from_dict({"model": {"num_channels": 8}})
    with pytest.raises(ConfigError, match="unknown model key 3"):
        config_from_dict({"model": {3: 8}})
