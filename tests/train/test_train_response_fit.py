"""Training a field model on BaTiO3 polarization, Born charges and polarizability (issue 10).

The data are a few frames of the allegro-pol BaTiO3 set (tests/fixtures/data/PROVENANCE.md):
three training frames of ``BaTiO3.xyz`` and two held-out frames (``original_dataset_index`` 59
and 66 of the 73-frame file). Units: P e·Å (cell dipole), Z* e, α e·Å²/V, field V/Å.
"""

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

from tace_jax.inference import Potential
from tace_jax.testing import tiny_model
from tace_jax.train import fit
from tace_jax.train.metrics import format_metrics

DATA = Path(__file__).parents[1] / "fixtures" / "data"
TRAIN = DATA / "batio3_response_train3.xyz.xz"
TEST = DATA / "batio3_response_test2.xyz.xz"
RESPONSE = ("polarization", "born_effective_charges", "conservative_polarizability")


def _config(out, **kw):
    return {
        "train_file": str(TRAIN),
        "valid_file": str(TRAIN),
        "test_file": str(TEST),
        "model": tiny_model(equivariant_embeddings=["electric_field"]),
        "energy_weight": 1.0,
        "forces_weight": 1.0,
        "stress_weight": 0.0,
        "polarization_weight": 10.0,
        "born_effective_charges_weight": 10.0,
        "conservative_polarizability_weight": 0.01,
        "batch_size": 1,
        "lr": 0.03,
        "ema_decay": None,
        "scheduler": "constant",
        "patience": None,
        "dtype": "float64",
        "output_dir": str(out),
        "progress": False,
        **kw,
    }


def _fold(diff, cell):
    """Cell-dipole differences folded into e·R (numpy, fully periodic cells)."""
    frac = diff @ np.linalg.inv(cell)
    return diff - np.round(frac) @ cell


def _numpy_metrics(pot, frames):
    preds = pot.predict(frames, ("energy", "forces", *RESPONSE))
    err = {p: [] for p in ("energy_per_atom", "forces", *RESPONSE)}
    zs = []
    for a, p in zip(frames, preds):
        r = a.calc.results
        err["energy_per_atom"].append((p["energy"] - r["energy"]) / len(a))
        err["forces"].append(p["forces"] - r["forces"])
        d = p["polarization"] - np.asarray(r["polarization"])
        err["polarization"].append(_fold(d, np.asarray(a.cell)))
        z = np.asarray(r["born_effective_charges"]).reshape(-1, 3, 3)
        err["born_effective_charges"].append(p["born_effective_charges"] - z)
        alpha = np.asarray(a.info["polarizability"]).reshape(3, 3)
        err["conservative_polarizability"].append(p["conservative_polarizability"] - alpha)
        zs.append(a.numbers)
    out = {}
    for k, v in err.items():
        e = np.concatenate([np.ravel(x) for x in v])
        out[f"{k}_mae"], out[f"{k}_rmse"] = np.mean(np.abs(e)), np.sqrt(np.mean(e * e))
    z_all = np.concatenate(zs)
    dz = np.concatenate(err["born_effective_charges"])
    for z, sym in ((8, "O"), (22, "Ti"), (56, "Ba")):
        out[f"born_effective_charges_{sym}_mae"] = np.mean(np.abs(dz[z_all == z]))
    return out


@pytest.mark.slow  # 135-atom cells with double backprop through Z* and α: minutes on 2 CPUs
def test_response_loss_decreases_and_metrics_match_predict(tmp_path):
    steps = []

    def record(event, info):
        if event == "step":
            m = info["metrics"]
            steps.append(
                {t: float(m[f"loss_{t}"]) / max(float(m[f"count_{t}"]), 1) for t in RESPONSE}
            )

    res = fit(_config(tmp_path / "run", max_epochs=6), callbacks=[record])
    assert len(steps) == 18
    first = {t: np.mean([s[t] for s in steps[:3]]) for t in RESPONSE}
    last = {t: np.mean([s[t] for s in steps[-3:]]) for t in RESPONSE}
    for t in RESPONSE:
        assert last[t] < 0.95 * first[t], (t, first[t], last[t])

    # logged metrics: metrics.jsonl / .csv rows and test_metrics.json
    out = tmp_path / "run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for t in RESPONSE:
        assert np.isfinite(rows[-1][f"valid_{t}_mae"]) and np.isfinite(rows[-1][f"train_{t}_rmse"])
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "valid_born_effective_charges_Ti_mae" in header and "valid_polarization_rmse" in header
    assert "Z* MAE" in format_metrics(rows[-1] | res.valid_metrics)
    test = json.loads((out / "test_metrics.json").read_text())["batio3_response_test2.xyz"]
    ref = _numpy_metrics(Potential.load(out / "model"), ase.io.read(TEST, ":"))
    for k, v in ref.items():
        np.testing.assert_allclose(test[k], v, rtol=1e-8, err_msg=k)
