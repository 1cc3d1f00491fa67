"""``tace-jax eval`` and ``Potential.predict`` use each structure's fidelity level (issue 10,
Build 3).

A 2-level multi-head model (random weights, different E0/σ/μ per level) predicts different
energies per level; on a mixed file every frame must get its own level's prediction.
"""

import json

import ase.io
import numpy as np
import pytest

from tace_jax.cli import eval as cli_eval
from tace_jax.data import DataError, bundled_dataset_path, read_structures, structure_to_atoms
from tace_jax.inference import Potential
from tace_jax.models import Statistics, TACEConfig
from tace_jax.testing import MorsePotential

ZS = (1, 6, 8)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval_levels")
    cfg = TACEConfig(
        atomic_numbers=ZS,
        cutoff=4.0,
        num_layers=1,
        correlation=2,
        num_channel=4,
        lmax_node=1,
        lmax_edge=1,
        radial_hidden=(8,),
        readout_hidden=(4,),
        zbl=False,
        num_levels=2,
        use_multi_head=True,
    )
    stats = Statistics(
        [[-13.6, -1029.0, -2041.0], [-8.6, -1024.0, -2036.0]],
        [[0.5, 0.5, 0.5], [1.5, 1.5, 1.5]],
        [[0.0, 0.0, 0.0], [0.2, 0.2, 0.2]],
    )
    import jax

    pot = Potential.init(cfg, stats, jax.random.key(0), dtype="float64")
    model = d / "model.tace"
    pot.save(model)
    frames = [
        structure_to_atoms(s)
        for s in read_structures(bundled_dataset_path("rmd17_ethanol_train"), index=":8")
    ]
    morse = MorsePotential(ZS, cutoff=4.0, dtype="float64")
    levels = [0, 1, 1, 0, 1, 0, 0, 1]
    for a, lv in zip(frames, levels):
        p = morse.predict(a, ("energy", "forces"))
        a.calc = None
        a.info = {"energy": p["energy"] + (-4181.0 if lv == 0 else -4136.0), "fidelity": lv}
        a.arrays["forces"] = p["forces"]
    mixed = d / "mixed.xyz"
    ase.io.write(mixed, frames, format="extxyz")
    return {"pot": pot, "model": str(model), "mixed": str(mixed), "levels": levels, "dir": d}


def _energies(out):
    return np.array([o["energy"] for o in out])


def test_predict_uses_each_structures_level(setting):
    pot, levels = setting["pot"], setting["levels"]
    atoms = ase.io.read(setting["mixed"], ":")
    e0 = _energies(pot.predict(atoms, ("energy",), level=[0] * 8))
    e1 = _energies(pot.predict(atoms, ("energy",), level=[1] * 8))
    assert np.min(np.abs(e1 - e0)) > 1.0  # the two levels predict different energies
    expect = np.where(np.array(levels) == 1, e1, e0)
    mixed = _energies(pot.predict(atoms, ("energy",), level_key="fidelity"))
    np.testing.assert_allclose(mixed, expect, rtol=1e-12)
    for a, lv in zip(atoms, levels):
        a.info["level"] = lv
    np.testing.assert_allclose(_energies(pot.predict(atoms, ("energy",))), expect, rtol=1e-12)
    np.testing.assert_allclose(
        _energies(pot.predict(atoms, ("energy",), level=levels)), expect, rtol=1e-12
    )
    with pytest.raises(ValueError, match="3 values for 8 structures"):
        pot.predict(atoms, ("energy",), level=[0, 1, 0])
    with pytest.raises(DataError, match=r"structure 1: input 'level' = \[2\] is outside"):
        pot.predict(atoms, ("energy",), level=[0, 2, 0, 0, 0, 0, 0, 0])


def test_eval_metrics_per_structure_level_equal_numpy(setting):
    pot, levels = setting["pot"], setting["levels"]
    structures = read_structures(setting["mixed"], level_key="fidelity")
    assert [s.level for s in structures] == levels
    metrics, _ = cli_eval.evaluate_structures(pot, structures, batch_size=16)
    atoms = ase.io.read(setting["mixed"], ":")
    e0 = _energies(pot.predict(atoms, ("energy",), level=[0] * 8))
    e1 = _energies(pot.predict(atoms, ("energy",), level=[1] * 8))
    lv = np.array(levels)
    pred = np.where(lv == 1, e1, e0)
    err = pred - np.array([s.energy for s in structures])
    np.testing.assert_allclose(metrics["energy_mae"], np.abs(err).mean(), rtol=1e-10)
    np.testing.assert_allclose(metrics["energy_rmse"], np.sqrt((err**2).mean()), rtol=1e-10)
    for m in (0, 1):
        np.testing.assert_allclose(
            metrics[f"level_{m}_energy_mae"], np.abs(err[lv == m]).mean(), rtol=1e-10
        )
    wrong = np.where(lv == 1, e0, e1) - np.array([s.energy for s in structures])
    assert np.abs(wrong).mean() > 2 * metrics["energy_mae"]  # the level matters here


def test_eval_cli_reads_the_level_key_and_reports_per_level(setting, capsys):
    out = setting["dir"] / "m.json"
    rc = cli_eval.main(
        [setting["model"], setting["mixed"], "--level-key", "fidelity", "--json", str(out)]
    )
    assert rc == 0
    m = json.loads(out.read_text())
    structures = read_structures(setting["mixed"], level_key="fidelity")
    direct, _ = cli_eval.evaluate_structures(setting["pot"], structures)
    for k in ("energy_mae", "level_0_energy_mae", "level_1_energy_mae", "forces_mae"):
        np.testing.assert_allclose(m[k], direct[k], rtol=1e-9)
    assert "level_1_energy" in capsys.readouterr().out


def test_eval_cli_level_errors_name_file_and_frame(setting, capsys):
    args = [setting["model"], setting["mixed"]]
    rc = cli_eval.main([*args, "--level-key", "fidelity", "--level", "1"])
    assert rc == 2
    assert "mixed.xyz, frame 0: field 'level' is 0 but the file" in capsys.readouterr().err
    rc = cli_eval.main([*args, "--level", "2"])
    assert rc == 2
    assert "mixed.xyz, frame 0: field 'level' is 2 but the model has 2" in capsys.readouterr().err
