"""``tace-jax md``: config parsing, validation errors and a short run (stand-in potential)."""

from __future__ import annotations

import json

import ase.io
from ase.build import molecule

from tace_jax.cli import md as cli_md


def test_md_cli_run(fake_model, tmp_path, capsys):
    from tace_jax.cli.main import main

    struct = tmp_path / "water.extxyz"
    ase.io.write(struct, molecule("H2O"))
    cfg = tmp_path / "md.yaml"
    out = tmp_path / "out"
    cfg.write_text(
        f"model: {fake_model}\nstructure: {struct}\nensemble: langevin\nsteps: 20\n"
        f"log_interval: 10\ndtype: float64\noutput: {out}\nprogress: false\n"
    )
    assert main(["md", str(cfg), "temperature=250", "traj_interval=5"]) == 0
    assert "atom-steps/s" in capsys.readouterr().out
    frames = ase.io.read(out / "trajectory.extxyz", index=":")
    assert len(frames) == 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["temperature"] == 250.0 and summary["steps"] == 20
    assert (out / "md.log").exists() and (out / "final.extxyz").exists()


def test_md_cli_errors(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: m.tace\nstructure: s.xyz\nensembel: nve\n")
    assert cli_md.main([str(cfg)]) == 2
    assert "unknown key(s) ['ensembel']" in capsys.readouterr().err
    assert cli_md.main(["model=m.tace", "structure=s.xyz", "ensemble=npz"]) == 2
    assert "unknown ensemble" in capsys.readouterr().err
    assert cli_md.main(["model=m.tace", "structure=s.xyz", "timestep=-1"]) == 2
    assert "'timestep' must be > 0" in capsys.readouterr().err
    assert cli_md.main(["--print-config"]) == 0
    assert "ensemble: nvt" in capsys.readouterr().out
