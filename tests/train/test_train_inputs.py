"""Training reads model inputs through the one input assembler (issue 9, Build 1).

A field model is trained on frames that carry ``electric_field`` in ``atoms.info``; the batches
hold exactly the inputs the model reads, and a frame missing a required input is an error that
names its file and frame.
"""

import ase.io
import numpy as np
import pytest

from tace_jax.data import DataError, bundled_dataset_path, read_structures, structure_to_atoms
from tace_jax.inference import Potential
from tace_jax.testing import tiny_model
from tace_jax.train import fit

MODEL = tiny_model()


def _data(tmp_path, n=8, drop_charges_at=None):
    frames = []
    rng = np.random.default_rng(0)
    for k, s in enumerate(read_structures(bundled_dataset_path("rmd17_ethanol_train"))[:n]):
        atoms = structure_to_atoms(s)
        atoms.info["electric_field"] = rng.normal(scale=0.05, size=3)
        if k != drop_charges_at:
            atoms.arrays["charges"] = rng.normal(scale=0.3, size=len(atoms))
        frames.append(atoms)
    path = tmp_path / "field.xyz"
    ase.io.write(path, frames, format="extxyz")
    return path


def _config(path, out, **model):
    return {
        "train_file": str(path),
        "valid_fraction": 0.25,
        "model": {**MODEL, **model},
        "batch_size": 2,
        "max_steps": 2,
        "dtype": "float64",
        "output_dir": str(out),
        "progress": False,
        "scale_type": "rms_forces",
    }


def test_field_model_trains_and_predicts_with_the_field(tmp_path):
    path = _data(tmp_path)
    res = fit(_config(path, tmp_path / "run", equivariant_embeddings=["electric_field"]))
    assert res.steps == 2
    pot = Potential.load(tmp_path / "run" / "model")
    assert pot.input_names == ("electric_field",)
    atoms = ase.io.read(path, 0)
    e0 = pot.predict(atoms, ("energy",))["energy"]
    e1 = pot.predict(atoms, ("energy",), electric_field=[0.0, 0.0, 0.5])["energy"]
    assert np.isfinite(e0) and abs(e0 - e1) > 0


def test_missing_required_input_names_the_frame(tmp_path):
    path = _data(tmp_path, drop_charges_at=5)
    cfg = _config(path, tmp_path / "run", targets=["energy", "direct_dipole"])
    with pytest.raises(DataError, match=r"field.xyz, frame 5: required input 'charges'"):
        fit(cfg)
