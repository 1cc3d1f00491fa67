"""The shipped water response configs load and train (issue 10, Build 5).

``tace_jax/configs/water_{tensors,apt,monomer_field}.yaml`` are read with
:func:`tace_jax.train.load_config` and set up (data with the unit conversion, statistics, model,
loss terms; fast) and, marked slow, trained for 2 optimiser steps on 3 small synthetic frames
each, written here in the layout that ``benchmarks/water_response.py prep`` writes (atomic-unit
``potential``/``mu``/``alpha`` and per-atom ``charges`` for the SA-GPR sets, a 9-number ``apt``
array for the Born charges), so that a renamed key or an invalid option in a config fails here.
"""

from pathlib import Path

import ase
import ase.io
import ase.units
import numpy as np
import pytest

from tace_jax.train import fit, load_config
from tace_jax.train.setup import setup_training

CONFIGS = Path(__file__).parents[2] / "tace_jax" / "configs"
# a smaller model than shipped (compile time); every other key is the config's own
SMALL = ["model.num_layers=1", "model.num_channel=4", "model.radial_hidden=[8]",
         "model.readout_hidden=[4]"]  # fmt: skip
WATER = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])


def _tensor_frames(rng, charged: bool) -> list:
    """Monomer, dimer and (optionally) a Zundel-like cation with a.u. labels."""
    zundel = np.array(
        [[-1.2, 0, 0], [1.2, 0, 0], [0, 0.05, 0], [-1.6, 0.8, 0.3], [-1.6, -0.8, -0.3],
         [1.6, 0.8, -0.3], [1.6, -0.8, 0.3]]
    )  # fmt: skip
    geoms = [
        ("OHH", WATER, 0.0),
        ("OHHOHH", np.vstack([WATER, WATER + [0.3, 0.2, 2.9]]), 0.0),
        ("OOHHHHH", zundel, 1.0 if charged else 0.0),
    ]
    frames = []
    for symbols, pos, q in geoms:
        a = ase.Atoms(symbols, positions=pos + 0.02 * rng.standard_normal(pos.shape), pbc=False)
        a.info["potential"] = -76.35 * symbols.count("O") + 0.01 * rng.standard_normal()
        a.info["mu"] = 0.7 * rng.standard_normal(3)
        alpha = np.diag(9.8 * symbols.count("O") + rng.random(3))
        a.info["alpha"] = alpha.ravel()
        m = a.get_masses()
        a.arrays["charges"] = q * m / m.sum()
        frames.append(a)
    return frames


def _apt_frames(rng) -> list:
    """Three periodic boxes of 2 waters with APTs near diag(−0.9) (O) / diag(0.45) (H)."""
    frames = []
    for _ in range(3):
        pos = np.vstack([WATER + 1.0, WATER + [3.5, 3.0, 3.2]])
        a = ase.Atoms("OHHOHH", positions=pos + 0.02 * rng.standard_normal(pos.shape))
        a.cell, a.pbc = np.eye(3) * 6.5, True
        q = np.where(a.numbers == 8, -0.9, 0.45)
        apt = q[:, None, None] * np.eye(3) + 0.05 * rng.standard_normal((len(a), 3, 3))
        a.arrays["apt"] = apt.reshape(len(a), 9)
        frames.append(a)
    return frames


def _write(tmp_path, name) -> tuple[Path, list]:
    rng = np.random.default_rng(0)
    if name == "water_apt":
        frames = _apt_frames(rng)
    else:
        frames = _tensor_frames(rng, charged=name == "water_tensors")
        if name == "water_monomer_field":
            frames = [frames[0].copy() for _ in range(3)]
            for a in frames:
                a.positions += 0.03 * rng.standard_normal(a.positions.shape)
    data = tmp_path / "frames.xyz"
    ase.io.write(data, frames, format="extxyz")
    return data, frames


def _config(tmp_path, name, data, extra=()):
    return load_config(
        CONFIGS / f"{name}.yaml",
        [f"train_file={data}", f"valid_file={data}", f"output_dir={tmp_path / 'run'}", *extra],
        test_file=None,
        max_steps=2,
        batch_size=3 if name != "water_apt" else 1,
    )


TERMS = {
    "water_tensors": {"dipole", "polarizability"},
    "water_apt": {"born_effective_charges"},
    "water_monomer_field": {"energy", "dipole", "polarizability"},
}


@pytest.mark.parametrize("name", sorted(TERMS))
def test_water_config_sets_up(tmp_path, name):
    """Config → data (keys, a.u. → eV/Å/e), statistics, model, loss terms; no compile."""
    data, frames = _write(tmp_path, name)
    setup = setup_training(_config(tmp_path, name, data))
    weights = {k for k, w in setup.loss_cfg.weights if w > 0}
    assert weights == TERMS[name]
    s, a = setup.data.train[0], frames[0]
    if name == "water_apt":
        assert "electric_field" in setup.model_cfg.input_names
        np.testing.assert_allclose(s.born_charges.reshape(-1, 9), a.arrays["apt"], atol=1e-7)
        return
    np.testing.assert_allclose(s.dipole, a.info["mu"] * ase.units.Bohr, atol=1e-7)
    alpha = a.info["alpha"].reshape(3, 3) * ase.units.Bohr**2 / ase.units.Hartree
    np.testing.assert_allclose(s.polarizability, alpha, atol=1e-8)
    np.testing.assert_allclose(s.energy, a.info["potential"] * ase.units.Hartree, atol=1e-5)
    if name == "water_tensors":
        assert setup.model_cfg.targets == ("energy", "direct_dipole", "direct_polarizability")
        q = setup.data.train[2].charges  # the Zundel-like cation: Σ q = +1
        assert q is not None and abs(q.sum() - 1.0) < 1e-6
    else:
        assert "electric_field" in setup.model_cfg.input_names


@pytest.mark.slow  # XLA compiles of the train/eval steps: ~30-40 s each on 2 loaded CPUs
@pytest.mark.parametrize("name", sorted(TERMS))
def test_water_config_trains_two_steps(tmp_path, name):
    data, _ = _write(tmp_path, name)
    res = fit(_config(tmp_path, name, data, SMALL))
    assert res.steps == 2
    assert res.model_path.exists()
    losses = [v for k, v in res.valid_metrics.items() if k.endswith("_rmse")]
    assert losses and all(np.isfinite(losses))
