"""Training a TACE model with Latent Ewald Summation end to end (docs/theory.md §4).

* ``model.les*`` keys pass the training config (YAML overrides included);
* ``fit`` trains the LES readout with the rest: its parameters change, the loss decreases and
  the exported model predicts ``latent_charges``;
* the static k-grid of a data set (periodic cells, molecules, mixed ``pbc`` rejected) and the
  host-side check that a growing cell (NPT) still fits the compiled grid.
"""

from __future__ import annotations

import logging

import ase
import jax
import numpy as np
import pytest

from tace_jax.data import bundled_dataset_path
from tace_jax.data.structure import Structure
from tace_jax.inference import Potential
from tace_jax.models.les import check_kgrid_fits, dataset_les_static, ensure_kgrid, grow_kgrid
from tace_jax.ops import ewald_kgrid
from tace_jax.testing import tiny_model
from tace_jax.train import fit
from tace_jax.train.config import load_config

LES_MODEL = tiny_model(les=True, les_sigma=1.0, les_dl=2.0, les_output_scale=0.3)


def _les_leaves(variables) -> dict:
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat if "les" in str(p)}


def test_config_accepts_les_keys():
    cfg = load_config(
        None,
        [
            "model.les=true",
            "model.les_sigma=1.5",
            "model.les_dl=2.5",
            "model.les_norm_factor=90.0474",
        ],
        train_file="x.xyz",
    )
    assert cfg.model["les"] is True and cfg.model["les_sigma"] == 1.5
    assert cfg.model["les_dl"] == 2.5 and cfg.model["les_norm_factor"] == 90.0474


@pytest.mark.slow  # ~35 s on 2 shared CPU cores
def test_fit_trains_les_parameters(tmp_path):
    init_leaves = {}

    def record(event, info):
        if event == "step" and not init_leaves:
            init_leaves["losses"] = []
        if event == "step":
            init_leaves["losses"].append(float(info["metrics"]["loss"]))

    cfg = {
        "train_file": str(bundled_dataset_path("rmd17_ethanol_train")),
        "data_options": {"index": "0:12"},
        "valid_fraction": 0.25,
        "model": LES_MODEL,
        "batch_size": 3,
        "max_epochs": 4,
        "lr": 0.02,
        "forces_weight": 10.0,
        "scale_type": "rms_forces",
        "dtype": "float32",
        "output_dir": str(tmp_path / "run"),
        "progress": False,
        "seed": 1,
    }
    result = fit(cfg, callbacks=[record])
    losses = init_leaves["losses"]
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])

    pot = Potential.load(result.model_path)
    assert pot.config.les and pot.config.les_output_scale == 0.3
    trained = _les_leaves(pot.variables)
    assert trained, "no LES parameters in the exported model"
    # the same seed, untrained: the LES readout must have moved
    fresh = Potential.init(pot.config, pot.statistics, jax.random.PRNGKey(1), dtype="float32")
    start = _les_leaves(fresh.variables)
    assert start.keys() == trained.keys()
    moved = max(float(np.max(np.abs(trained[k] - start[k]))) for k in trained)
    assert moved > 1e-3

    atoms = ase.Atoms("CCOHHHHHH", positions=np.random.default_rng(0).normal(size=(9, 3)) * 1.2)
    out = pot.predict(atoms, properties=("energy", "forces", "latent_charges"))
    q = np.asarray(out["latent_charges"])
    assert q.shape == (9,) and np.all(np.isfinite(q)) and np.any(np.abs(q) > 0)


def _s(cell, pbc):
    cell = np.asarray(cell, float)
    return Structure(numbers=np.array([1]), positions=np.zeros((1, 3)), cell=cell, pbc=pbc)


def test_dataset_static_grid():
    small, big = np.eye(3) * 5.0, np.diag([9.0, 5.0, 13.0])
    mol = _s(np.zeros((3, 3)), np.zeros(3, bool))
    per = [_s(small, np.ones(3, bool)), _s(big, np.ones(3, bool))]
    assert dataset_les_static([mol], 2.0) == {"les_kgrid": (), "les_molecules": True}
    st = dataset_les_static(per, 2.0)
    assert st["les_molecules"] is False
    assert all(g >= n for g, n in zip(st["les_kgrid"], ewald_kgrid(big, 2.0)))
    assert dataset_les_static([*per, mol], 2.0)["les_molecules"] is True
    with pytest.raises(ValueError, match=r"structure 1 .*pbc=\[True, True, False\]"):
        dataset_les_static([per[0], _s(small, np.array([True, True, False]))], 2.0, where="train")


def test_growing_cell_detected_and_reallocated(caplog):
    """NPT: inside jit the grid is static; a cell that outgrows it is detected on the host
    and the grid is regrown with a log line, never silently truncated."""
    cell = np.eye(3) * 6.0
    grid = grow_kgrid(None, ewald_kgrid(cell, 2.0, headroom=0.1))
    check_kgrid_fits(cell * 1.05, grid, 2.0)  # within the headroom: fine
    with pytest.raises(RuntimeError, match=r"at step 7 needs k-grid .* larger than the static"):
        check_kgrid_fits(cell * 1.8, grid, 2.0, current_step=7)
    with caplog.at_level(logging.INFO, logger="tace_jax"):
        new = ensure_kgrid(cell * 1.8, grid, 2.0)
    assert all(n >= g for n, g in zip(new, grid)) and new != grid
    assert "reallocating" in caplog.text
    # a fitting cell keeps the grid; `need` (the largest grid a jitted MD chunk met) and
    # `headroom` (room for further growth) both enlarge a regrown one
    assert ensure_kgrid(cell, grid, 2.0) == grid
    wanted = tuple(g + 3 for g in grid)
    assert ensure_kgrid(cell, grid, 2.0, need=wanted) == grow_kgrid(grid, wanted)
    far = ensure_kgrid(cell * 1.8, grid, 2.0, headroom=0.5)
    assert far == grow_kgrid(grid, ewald_kgrid(cell * 1.8, 2.0, headroom=0.5)) and far > new
