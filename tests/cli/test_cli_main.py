"""The ``tace-jax`` CLI: dispatch, ``train --schema``, config errors, train + eval end to end."""

import json
import sys
import types

import pytest

from tace_jax.cli.main import main
from tace_jax.data import bundled_dataset_path

TINY_YAML = """
train_file: bundled:rmd17_ethanol_train
test_file: bundled:rmd17_ethanol_test
data_options: {{index: "0:16"}}
valid_fraction: 0.25
model: {{cutoff: 4.0, num_layers: 1, correlation: 2, num_channel: 4, lmax_node: 1,
         lmax_edge: 1, radial_hidden: [8], readout_hidden: [4], zbl: false}}
batch_size: 4
max_epochs: 2
lr: 0.01
output_dir: {out}
progress: false
"""


def test_usage_and_unknown(capsys):
    assert main([]) == 0
    assert "train" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["md", "vib"])
def test_dispatch_to_dynamics(monkeypatch, cmd):
    seen = {}
    fake = types.ModuleType(f"tace_jax.cli.{cmd}")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, f"tace_jax.cli.{cmd}", fake)
    assert main([cmd, "model.tace", "--steps", "5"]) == 0
    assert seen["argv"] == ["model.tace", "--steps", "5"]


def test_schema(capsys):
    assert main(["train", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "train_file" in schema["properties"] and "model" in schema["properties"]


def test_config_errors(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train_file: x.xyz\nlearning_rate: 0.1\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and str(cfg) in err
    cfg.write_text("train_file: x.xyz\n")
    assert main(["train", str(cfg), "--print-config", "lr=0.5", "model.num_channel=8"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out and "num_channel: 8" in out
    assert main(["train", str(cfg), "max_epochs=1"]) == 2  # missing file: clear error
    assert "x.xyz" in capsys.readouterr().err


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML.format(out=out))
    assert main(["train", str(cfg), "max_time=60"]) == 0
    printed = capsys.readouterr().out
    assert "test [" in printed and (out / "model").exists()
    png, js = tmp_path / "parity.png", tmp_path / "m.json"
    data = str(bundled_dataset_path("rmd17_ethanol_test"))
    rc = main(
        [
            "eval",
            str(out / "model"),
            data,
            "--index",
            "0:16",
            "--out",
            str(png),
            "--json",
            str(js),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "forces" in printed and "energy_per_atom" in printed
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads(js.read_text())
    # the same 16 test frames were evaluated during training: identical numbers
    logged = next(iter(json.loads((out / "test_metrics.json").read_text()).values()))
    assert metrics["n_structures"] == logged["n_structures"] == 16
    assert metrics["forces_mae"] == pytest.approx(logged["forces_mae"], rel=1e-4)
    assert metrics["energy_mae"] == pytest.approx(logged["energy_mae"], rel=1e-2, abs=2e-3)


def test_quickstart_main_job(tmp_path, capsys):
    """The main job's code path with a tiny model and a few seconds of training."""
    out = tmp_path / "qs"
    tiny = [
        "model.num_layers=1",
        "model.num_channel=4",
        "model.lmax_node=1",
        "model.lmax_edge=1",
        "model.radial_hidden=[8]",
        "model.readout_hidden=[4]",
        "data_options={index: '0:20'}",
        "batch_size=4",
        "max_epochs=2",
    ]
    assert main(["quickstart", "--output-dir", str(out), "--max-time", "30", "--no-md", *tiny]) == 0
    printed = capsys.readouterr().out
    assert "test energy MAE" in printed and "trivial baseline" in printed
    assert (out / "model").exists()
