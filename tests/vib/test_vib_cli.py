"""``tace-jax vib``: frequencies, ZPE, PNG and JSON output (stand-in potential)."""

from __future__ import annotations

import json

import ase.io
import pytest
from ase.build import molecule

import tace_jax.md.io as md_io
from tace_jax.md import MorsePotential


@pytest.fixture
def fake_model(monkeypatch, tmp_path):
    pot = MorsePotential(atomic_numbers=(1, 8), cutoff=4.0, dtype="float64", r0=1.0)
    model = tmp_path / "model.tace"
    model.write_text("stand-in")
    monkeypatch.setattr(md_io, "load_potential", lambda path, dtype=None: pot)
    return model


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
