"""``tace-jax eval`` reports the response errors (issue 10: P, Z* per element, α, dipole).

The expected numbers are recomputed here in numpy from ``Potential.predict`` (the polarization
folded into the quantum e·R with this file's own fractional-coordinate rounding), so a wrong
prediction name, unit or folding in the CLI fails the test.
"""

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

from tace_jax.cli import eval as cli_eval
from tace_jax.inference import Potential
from tace_jax.models import Statistics
from tace_jax.testing import tiny_tace_config

BATIO3 = Path(__file__).parents[1] / "fixtures" / "data" / "batio3_response_train3.xyz.xz"
DEBYE = 4.8032047  # Debye per e·Å (the direct_dipole head is in Debye)


def _fold(d, cell):
    frac = d @ np.linalg.inv(cell)
    return d - np.round(frac) @ cell


def _mae(a, b):
    return float(np.mean(np.abs(np.asarray(a, float) - np.asarray(b, float))))


@pytest.fixture(scope="module")
def batio3(tmp_path_factory):
    import jax

    frames = ase.io.read(BATIO3, index=":2")
    d = tmp_path_factory.mktemp("eval_resp")
    path = d / "bto.xyz"
    ase.io.write(path, frames, format="extxyz")
    zs = (8, 22, 56)
    cfg = tiny_tace_config(zs, equivariant_embeddings=("electric_field",))
    pot = Potential.init(
        cfg,
        Statistics([[-430.0, -1600.0, -1900.0]], [[1.0] * 3], [[0.0] * 3]),
        jax.random.key(1),
        dtype="float64",
    )
    model = d / "model.tace"
    pot.save(model)
    return pot, model, path, ase.io.read(path, index=":")


def test_eval_field_model_response_metrics(batio3, tmp_path, capsys):
    pot, model, path, frames = batio3
    out = tmp_path / "m.json"
    png = tmp_path / "parity.png"
    assert cli_eval.main([str(model), str(path), "--json", str(out), "--out", str(png)]) == 0
    m = json.loads(out.read_text())
    printed = capsys.readouterr().out
    props = (
        "energy",
        "forces",
        "polarization",
        "born_effective_charges",
        "conservative_polarizability",
    )
    preds = pot.predict(frames, props)
    dp, dz, da, zs = [], [], [], []
    for a, p in zip(frames, preds):
        r = a.calc.results
        dp.append(_fold(np.asarray(p["polarization"]) - r["polarization"], a.cell.array))
        dz.append(
            np.asarray(p["born_effective_charges"]) - r["born_effective_charges"].reshape(-1, 3, 3)
        )
        da.append(
            np.asarray(p["conservative_polarizability"])
            - np.reshape(a.info["polarizability"], (3, 3))
        )
        zs.append(a.numbers)
    dp, dz, da, zs = np.array(dp), np.concatenate(dz), np.array(da), np.concatenate(zs)
    assert m["polarization_mae"] == pytest.approx(np.abs(dp).mean(), rel=1e-9)
    assert m["born_effective_charges_mae"] == pytest.approx(np.abs(dz).mean(), rel=1e-9)
    assert m["born_effective_charges_rmse"] == pytest.approx(np.sqrt((dz**2).mean()), rel=1e-9)
    assert m["born_effective_charges_Ti_mae"] == pytest.approx(
        np.abs(dz[zs == 22]).mean(), rel=1e-9
    )
    assert m["conservative_polarizability_mae"] == pytest.approx(np.abs(da).mean(), rel=1e-9)
    # a label shifted by one polarization quantum e·R gives the same error
    shifted = []
    for a in frames:
        b = a.copy()
        r = dict(a.calc.results)
        b.calc = None
        b.info = dict(a.info, energy=r["energy"], stress=r["stress"])
        b.info["polarization"] = r["polarization"] + a.cell.array[0] - 2 * a.cell.array[2]
        b.arrays["forces"] = r["forces"]
        b.arrays["born_effective_charges"] = r["born_effective_charges"]
        shifted.append(b)
    spath = tmp_path / "shifted.xyz"
    ase.io.write(spath, shifted, format="extxyz")
    out2 = tmp_path / "m2.json"
    assert cli_eval.main([str(model), str(spath), "--json", str(out2)]) == 0
    m2 = json.loads(out2.read_text())
    assert m2["polarization_mae"] == pytest.approx(m["polarization_mae"], rel=1e-9)
    assert "born_effective_charges_Ba" in printed and "polarization" in printed
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_eval_born_charges_only_file(batio3, tmp_path):
    """A file with Born charges and nothing else (as the liquid-water APT set) is evaluated."""
    pot, model, _, frames = batio3
    a = frames[0].copy()
    a.calc = None
    a.info = {}
    a.arrays["apt"] = frames[0].calc.results["born_effective_charges"].reshape(-1, 9)
    path = tmp_path / "apt.xyz"
    ase.io.write(path, [a], format="extxyz")
    out = tmp_path / "m.json"
    assert (
        cli_eval.main([str(model), str(path), "--born-charges-key", "apt", "--json", str(out)]) == 0
    )
    m = json.loads(out.read_text())
    p = pot.predict(a, ("born_effective_charges",))["born_effective_charges"]
    assert m["born_effective_charges_mae"] == pytest.approx(
        _mae(p, a.arrays["apt"].reshape(-1, 3, 3)), rel=1e-9
    )
    assert "energy_mae" not in m and "polarization_mae" not in m
    # without the key, nothing is labelled: a clear error naming the file
    assert cli_eval.main([str(model), str(path)]) == 2


def test_eval_direct_heads_with_units(tmp_path, capsys):
    """Direct dipole (Debye head → e·Å) and polarizability on monomers in atomic units."""
    import jax

    rng = np.random.default_rng(5)
    water = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
    frames = []
    for _ in range(3):  # SA-GPR layout: potential (Ha), mu (e·bohr), alpha (bohr³, 9 numbers)
        a = ase.Atoms("OHH", positions=water + 0.03 * rng.standard_normal((3, 3)))
        a.info.update(potential=-76.35, mu=0.73 * rng.standard_normal(3))
        a.info["alpha"] = (np.diag([9.9, 9.8, 9.6]) + 0.1 * rng.standard_normal((3, 3))).ravel()
        a.arrays["charges"] = np.zeros(3)  # the direct dipole head reads per-atom charges
        frames.append(a)
    path = tmp_path / "mono.xyz"
    ase.io.write(path, frames, format="extxyz")
    cfg = tiny_tace_config(
        (1, 8),
        lmax_node=2,
        lmax_edge=2,
        targets=("energy", "direct_dipole", "direct_polarizability"),
    )
    pot = Potential.init(
        cfg,
        Statistics([[-13.6, -2041.0]], [[1.0, 1.0]], [[0.0, 0.0]]),
        jax.random.key(2),
        dtype="float64",
    )
    model = tmp_path / "model.tace"
    pot.save(model)
    out = tmp_path / "m.json"
    bohr, au_alpha = 0.52917721, 0.52917721**2 / 27.211386
    units = f"dipole={bohr},polarizability={au_alpha}"
    rc = cli_eval.main(
        [
            str(model),
            str(path),
            "--energy-key",
            "potential",
            "--dipole-key",
            "mu",
            "--polarizability-key",
            "alpha",
            "--units",
            units,
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads(out.read_text())
    preds = pot.predict(frames, ("energy",))
    ref_mu = np.array([np.asarray(a.info["mu"], float) * bohr for a in frames])
    ref_al = np.array([np.reshape(a.info["alpha"], (3, 3)) * au_alpha for a in frames])
    mu = np.array([p["direct_dipole"] for p in preds]) / DEBYE
    al = np.array([p["direct_polarizability"] for p in preds])
    assert m["dipole_mae"] == pytest.approx(_mae(mu, ref_mu), rel=1e-9)
    assert m["polarizability_mae"] == pytest.approx(_mae(al, ref_al), rel=1e-9)
    assert "conservative_polarizability_mae" not in m
    assert cli_eval.main([str(model), str(path), "--units", "dipole"]) == 2
