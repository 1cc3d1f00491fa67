"""End-to-end training on a tiny rMD17 ethanol subset (bundled data, tiny model).

* the loss decreases;
* outputs (logs, checkpoints, exported model) are written;
* logged test metrics are recomputable with numpy from ``Potential.predict``;
* a run that crashes mid-epoch and resumes ends with the same parameters as an uninterrupted
  run.
"""

import json

import jax
import numpy as np
import pytest

from tace_jax.data import bundled_dataset_path, read_structures, structure_to_atoms
from tace_jax.inference import Potential
from tace_jax.testing import tiny_model
from tace_jax.train import fit
from tace_jax.train.logger import read_jsonl

TINY_MODEL = tiny_model()


def tiny_config(out, **kw):
    cfg = {
        "train_file": str(bundled_dataset_path("rmd17_ethanol_train")),
        "test_file": str(bundled_dataset_path("rmd17_ethanol_test")),
        "data_options": {"index": "0:24"},
        "valid_fraction": 0.25,
        "model": TINY_MODEL,
        "batch_size": 3,
        "max_epochs": 3,
        "lr": 0.02,
        "forces_weight": 10.0,
        "scale_type": "rms_forces",
        "checkpoint_every": 4,
        "dtype": "float64",
        "output_dir": str(out),
        "progress": False,
        "seed": 3,
    }
    cfg.update(kw)
    return cfg


class Crash(RuntimeError):
    pass


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run: 18 train structures, 6 steps/epoch, 3 epochs."""
    losses = []

    def record(event, info):
        if event == "step":
            losses.append(float(info["metrics"]["loss"]))

    out = tmp_path_factory.mktemp("ref")
    result = fit(tiny_config(out), callbacks=[record])
    return result, losses


def test_loss_decreases(reference_run):
    result, losses = reference_run
    assert len(losses) == 18 and result.steps == 18 and result.stop_reason == "max_epochs"
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    hist = [r for r in result.history if r["event"] == "epoch"]
    assert len(hist) == 3
    assert hist[-1]["valid_loss"] < hist[0]["valid_loss"]


def test_outputs(reference_run):
    result, _ = reference_run
    out = result.output_dir
    for name in (
        "config.yaml",
        "statistics.json",
        "metrics.csv",
        "metrics.jsonl",
        "train.log",
        "model",
        "test_metrics.json",
    ):
        assert (out / name).exists(), name
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for key in (
        "train_loss",
        "valid_energy_mae",
        "valid_energy_rmse",
        "valid_forces_mae",
        "valid_energy_per_atom_rmse",
        "valid_forces_H_mae",
        "valid_forces_O_rmse",
        "lr",
    ):
        assert key in rows[0], key
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "valid_forces_C_mae" in header
    pot = Potential.load(out / "model")
    assert pot.config.atomic_numbers == (1, 6, 8) and pot.config.num_channel == 4


def test_metrics_recomputable_from_predict(reference_run):
    """The logged test errors equal numpy errors of Potential.predict on the test structures."""
    result, _ = reference_run
    logged = json.loads((result.output_dir / "test_metrics.json").read_text())
    logged = next(iter(logged.values()))
    structures = read_structures(bundled_dataset_path("rmd17_ethanol_test"), index="0:24")
    pot = Potential.load(result.output_dir / "model", dtype="float64")
    preds = pot.predict([structure_to_atoms(s) for s in structures], ("energy", "forces"))
    e_err = np.array([p["energy"] - s.energy for p, s in zip(preds, structures)])
    n = np.array([s.n_atoms for s in structures])
    f_err = np.concatenate([p["forces"] - s.forces for p, s in zip(preds, structures)])
    z = np.concatenate([s.numbers for s in structures])
    expect = {
        "energy_mae": np.mean(np.abs(e_err)),
        "energy_rmse": np.sqrt(np.mean(e_err**2)),
        "energy_per_atom_mae": np.mean(np.abs(e_err / n)),
        "forces_mae": np.mean(np.abs(f_err)),
        "forces_rmse": np.sqrt(np.mean(f_err**2)),
        "forces_O_mae": np.mean(np.abs(f_err[z == 8])),
        "forces_H_rmse": np.sqrt(np.mean(f_err[z == 1] ** 2)),
    }
    for k, v in expect.items():
        assert logged[k] == pytest.approx(v, rel=1e-7, abs=1e-10), k
    assert logged["n_structures"] == len(structures)


def test_resume_is_exact(reference_run, tmp_path):
    """Crash in the middle of the last epoch (after the step-16 checkpoint), resume, compare."""
    ref, _ = reference_run

    def crash(event, info):
        if event == "step" and info["step"] == 17:
            raise Crash("simulated crash")

    with pytest.raises(Crash):
        fit(tiny_config(tmp_path), callbacks=[crash])
    ckpts = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert ckpts[-1] == 16  # last checkpoint before the crash: 4 batches into epoch 2
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert len(rows) == 2
    resumed = fit(tiny_config(tmp_path))
    assert resumed.steps == ref.steps == 18
    diff = jax.tree.map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
        (resumed.state.params, resumed.state.ema_params, resumed.state.opt_state),
        (ref.state.params, ref.state.ema_params, ref.state.opt_state),
    )
    assert max(jax.tree.leaves(diff)) <= 1e-6
    rows_ref = [r["valid_loss"] for r in ref.history]
    rows_res = [r["valid_loss"] for r in resumed.history]
    np.testing.assert_allclose(rows_res, rows_ref, rtol=1e-9)
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 3


def test_max_time_stops_cleanly(tmp_path):
    result = fit(tiny_config(tmp_path, max_time=0.0, max_epochs=50))
    assert result.stop_reason == "max_time" and result.steps == 1
    assert (tmp_path / "model").exists()
    assert result.history[-1]["event"] == "final"
    # the same directory continues where it stopped
    again = fit(tiny_config(tmp_path, max_time=None, max_steps=3, max_epochs=50))
    assert again.steps == 3 and again.stop_reason == "max_steps"
