"""Training from preprocessed shards (``train_dir``) against training from ``train_file``.

With ``stream_options.shuffle: global`` the streaming loader reproduces the in-memory batch
order exactly: the two set-ups build the same batches (fast test) and the two runs end with
the same parameters and metrics (slow tests). The statistics come from the shards (no pass
over the structures) and equal the in-memory ones.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import yaml

from tace_jax.cli.main import main as cli
from tace_jax.data import DataError, bundled_dataset_path
from tace_jax.testing import tiny_model
from tace_jax.train import fit
from tace_jax.train.config import ConfigError, config_from_dict
from tace_jax.train.setup import setup_training

MODEL = tiny_model()


def _config(out, **kw):
    cfg = {
        "train_file": str(bundled_dataset_path("rmd17_ethanol_train")),
        "data_options": {"index": "0:24"},
        "valid_fraction": 0.25,
        "model": MODEL,
        "batch_size": 3,
        "max_epochs": 2,
        "lr": 0.02,
        "forces_weight": 10.0,
        "dtype": "float64",
        "output_dir": str(out),
        "progress": False,
        "seed": 3,
    }
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """``tace-jax preprocess --config``: the same 24 frames, the config's keys and cutoff."""
    tmp = tmp_path_factory.mktemp("pp")
    (tmp / "train.yaml").write_text(yaml.safe_dump(_config(tmp / "unused")))
    out = tmp / "shards"
    assert cli(["preprocess", "bundled:rmd17_ethanol_train", "--out", str(out), "--config",
                str(tmp / "train.yaml"), "--shard-size", "5"]) == 0  # fmt: skip
    return out


def _streaming(out, shard_dir, **stream):
    cfg = _config(out, train_dir=str(shard_dir), stream_options=stream)
    del cfg["train_file"], cfg["data_options"]
    return cfg


def _same(a, b) -> None:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_setup_from_train_dir_equals_train_file(tmp_path, shard_dir):
    """Fast (nothing compiled): same model, statistics, splits and batches."""
    mem = setup_training(config_from_dict(_config(tmp_path / "m")))
    disk = setup_training(config_from_dict(_streaming(tmp_path / "d", shard_dir, shuffle="global")))
    assert disk.model_cfg == mem.model_cfg and disk.statistics == mem.statistics
    assert len(disk.data.train) == len(mem.data.train) == 18
    assert disk.steps_per_epoch == mem.steps_per_epoch and disk.loss_cfg == mem.loss_cfg
    for loader_m, loader_d in (
        (mem.train_loader, disk.train_loader),
        (mem.valid_loader, disk.valid_loader),
    ):
        assert loader_d.budgets == loader_m.budgets
        for a, b in zip(loader_m.epoch_batches(1), loader_d.epoch_batches(1)):
            _same(a, b)
    _same(mem.example_batch(), disk.example_batch())


@pytest.mark.slow
def test_train_dir_equals_train_file(tmp_path, shard_dir):
    mem = fit(_config(tmp_path / "mem"))
    disk = fit(_streaming(tmp_path / "disk", shard_dir, shuffle="global"))
    assert disk.steps == mem.steps == 12
    flat = lambda r: jax.tree.leaves(jax.device_get(r.state.params))
    for a, b in zip(flat(mem), flat(disk)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for k, v in mem.valid_metrics.items():
        assert disk.valid_metrics[k] == pytest.approx(v, rel=1e-10, abs=1e-14), k
    s_mem = json.loads((tmp_path / "mem" / "statistics.json").read_text())
    s_disk = json.loads((tmp_path / "disk" / "statistics.json").read_text())
    lines = s_disk.pop("streaming")
    assert "padding efficiency" in lines[0] and "shuffle=global" in lines[0]
    assert "padding efficiency" in (tmp_path / "disk" / "train.log").read_text()
    for k in ("atomic_energies", "scale", "shift", "avg_num_neighbors", "num_atoms"):
        np.testing.assert_allclose(s_disk[k], s_mem[k], rtol=1e-10)


@pytest.mark.slow
def test_buffer_shuffle_and_edge_budget_train(tmp_path, shard_dir):
    res = fit(_streaming(tmp_path / "buf", shard_dir, buffer_size=4, edge_budget=300))
    rows = [r for r in res.history if r["event"] == "epoch"]
    assert res.steps > 0 and len(rows) == 2 and np.isfinite(rows[-1]["valid_loss"])
    log = (tmp_path / "buf" / "train.log").read_text()
    assert "packing=budget" in log and "budgets (N, E, G) = (" in log


def test_train_dir_errors(tmp_path, shard_dir):
    with pytest.raises(ConfigError, match="exactly one"):
        config_from_dict({**_config(tmp_path), "train_dir": str(shard_dir)})
    with pytest.raises(ConfigError, match="need 'train_dir'"):
        config_from_dict(_config(tmp_path, valid_dir=str(shard_dir)))
    other = _streaming(tmp_path, shard_dir)
    other["model"] = {**MODEL, "cutoff": 5.0}
    with pytest.raises(DataError, match=r"manifest.json: preprocessed with cutoff 4.0 Å"):
        setup_training(config_from_dict(other))
    bad = _streaming(tmp_path, shard_dir, shufle="buffer")
    with pytest.raises(DataError, match="stream_options: unknown keys"):
        setup_training(config_from_dict(bad))
