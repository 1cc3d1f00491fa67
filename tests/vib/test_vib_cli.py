"""``tace-jax vib``: frequencies, ZPE, PNG and JSON output (stand-in potential)."""

from __future__ import annotations

import json

import ase.io
from ase.build import molecule


def test_vib_cli(fake_model, tmp_path, capsys):
    from tace_jax.cli.main import main

    struct = tmp_path / "water.xyz"
    ase.io.write(struct, molecule("H2O"))
    png, js = tmp_path / "spec.png", tmp_path / "vib.json"
    rc = main(
        ["vib", str(fake_model), str(struct), "--relax", "--png", str(png), "--json", str(js)]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "Zero-point energy" in out and "3 normal modes" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(js.read_text())
    assert len(data["frequencies_cm-1"]) == 3 and data["num_imaginary"] == 0
    assert data["zpe_ev"] > 0


def test_vib_cli_missing_file(tmp_path, capsys):
    from tace_jax.cli import vib

    assert vib.main([str(tmp_path / "none.tace"), str(tmp_path / "x.xyz")]) == 2
    assert "does not exist" in capsys.readouterr().err
