"""Training with stress labels on periodic structures (EMT labels), and recomputed stress
errors from ``Potential.predict``."""

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from tace_jax.inference import Potential
from tace_jax.train import fit


def _dataset(path, n=8, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.05 * rng.normal(), cubic=True)
        if k % 2:
            atoms[0].symbol = "Al"
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return frames


def test_fit_with_stress(tmp_path):
    train, test = tmp_path / "train.xyz", tmp_path / "test.xyz"
    _dataset(train, 8, 0)
    frames = _dataset(test, 3, 1)
    result = fit(
        {
            "train_file": str(train),
            "test_file": str(test),
            "valid_fraction": 0.25,
            "model": {
                "cutoff": 3.0,
                "num_layers": 1,
                "correlation": 1,
                "num_channel": 4,
                "lmax_node": 0,
                "lmax_edge": 1,
                "radial_hidden": [4],
                "readout_hidden": [4],
                "zbl": False,
            },
            "batch_size": 2,
            "max_epochs": 2,
            "stress_weight": 10.0,
            "lr": 0.01,
            "dtype": "float64",
            "output_dir": str(tmp_path / "run"),
            "progress": False,
        }
    )
    row = result.history[-1]
    assert np.isfinite(row["valid_stress_mae"]) and np.isfinite(row["train_stress_mae"])
    logged = next(iter(result.test_metrics.values()))
    pot = Potential.load(result.model_path, dtype="float64")
    preds = pot.predict(frames, ("energy", "forces", "stress"))
    ref = np.stack([a.get_stress(voigt=False) for a in frames])
    err = np.stack([p["stress"] for p in preds]) - ref
    assert logged["stress_mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-6)
    assert logged["stress_rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-6)
