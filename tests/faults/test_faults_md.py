"""Exploding MD (issue 14): ``tace-jax md`` stops within 50 steps with a one-line message and
exit status 3, keeps the trajectory written before the failure, and its restart file continues
at the saved step (stand-in Morse potential, float64)."""

from __future__ import annotations

import json
import re

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from tace_jax.cli import md as cli_md
from tace_jax.testing import MorsePotential


@pytest.fixture
def model(monkeypatch, tmp_path):
    pot = MorsePotential(atomic_numbers=(1, 6, 8), cutoff=4.0, dtype="float64", r0=1.1)
    path = tmp_path / "model.tace"
    path.write_text("stand-in")
    monkeypatch.setattr(cli_md, "load_potential", lambda p, dtype=None: pot)
    return path


def _water_box() -> Atoms:
    """8 H2O on a 2×2×2 grid in a periodic 6.2 Å cube."""
    w = molecule("H2O")
    box = Atoms(cell=np.eye(3) * 6.2, pbc=True)
    for shift in np.ndindex(2, 2, 2):
        m = w.copy()
        m.translate(np.array(shift) * 3.1 + 0.8)
        box += m
    return box


def _md(model, out, *args):
    base = [f"model={model}", f"output={out}", "dtype=float64", "progress=false"]
    return cli_md.main([*base, *args])


def _failed_step(err: str) -> int:
    return int(re.search(r"failed at step (\d+)", err)[1])


@pytest.mark.parametrize(
    "case", ["ethanol_50fs", pytest.param("water_box_20fs", marks=pytest.mark.slow)]
)
def test_exploding_nve_stops_and_restarts(model, tmp_path, capsys, case):
    atoms, dt = (molecule("CH3CH2OH"), 50) if case == "ethanol_50fs" else (_water_box(), 20)
    struct = tmp_path / "start.extxyz"
    ase.io.write(struct, atoms)
    out = tmp_path / "out"
    run = ("ensemble=nve", "temperature=1000", "steps=400", "log_interval=10")
    assert _md(model, out, f"structure={struct}", f"timestep={dt}", *run) == 3
    err = capsys.readouterr().err
    assert err.startswith("tace-jax md: error: simulation unstable: displacement check failed")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert re.search(r"worst: atom \d+\)", err) and "restart frame written to" in err
    step = _failed_step(err)
    assert 1 <= step <= 50
    frames = ase.io.read(out / "trajectory.extxyz", index=":")
    assert all(np.all(np.isfinite(f.positions)) for f in frames)
    restart = ase.io.read(out / "restart.extxyz")
    assert restart.info["md_step"] == step - 1
    assert np.all(np.isfinite(restart.get_momenta())) and np.any(restart.get_momenta())
    np.testing.assert_allclose(restart.cell.array, atoms.cell.array)
    # continue from the restart with a sane time step
    again = tmp_path / "again"
    assert _md(model, again, f"restart={out / 'restart.extxyz'}", "timestep=0.5", *run[:2],
               "steps=10", "log_interval=5") == 0  # fmt: skip
    summary = json.loads((again / "summary.json").read_text())
    assert summary["first_step"] == step - 1 and summary["final"]["step"] == step + 9
    first = ase.io.read(again / "trajectory.extxyz", index=0)
    np.testing.assert_allclose(first.positions, restart.positions, atol=1e-10)
    np.testing.assert_allclose(first.get_momenta(), restart.get_momenta(), atol=1e-10)


def test_trajectory_kept_until_the_failure(model, tmp_path, capsys):
    """A run that fails late (energy drift, at a step between 15 and 20) keeps every frame
    before it; its restart continues at the last healthy step."""
    struct = tmp_path / "ethanol.extxyz"
    ase.io.write(struct, molecule("CH3CH2OH"))
    out = tmp_path / "out"
    args = ("ensemble=nve", "temperature=1000", "timestep=5", "steps=100", "traj_interval=5")
    checks = ("max_displacement=null", "max_temperature=null", "max_energy_drift=1.5")
    assert _md(model, out, f"structure={struct}", *args, "log_interval=5", *checks) == 3
    err = capsys.readouterr().err
    assert "energy drift check failed at step" in err and "eV/atom exceeds the limit 1.5" in err
    step = _failed_step(err)
    assert 15 < step <= 20
    frames = ase.io.read(out / "trajectory.extxyz", index=":")
    assert [f.info["md_step"] for f in frames] == [0, 5, 10, 15]
    log = [ln.split() for ln in (out / "md.log").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in log] == [0, 5, 10, 15]
    restart = out / "restart.extxyz"
    assert ase.io.read(restart).info["md_step"] == step - 1
    again = tmp_path / "again"  # the restart file as structure also continues at its step
    assert _md(model, again, f"structure={restart}", "ensemble=nve", "timestep=0.5",
               "steps=6", "log_interval=3") == 0  # fmt: skip
    log = [ln.split() for ln in (again / "md.log").read_text().splitlines()[1:]]
    assert int(log[0][0]) == step - 1 and int(log[-1][0]) == step + 5
