"""The shipped response configs (batio3_response.yaml, sio2_response.yaml) load and train.

Two optimiser steps on two frames with a tiny model override (issue 10, Build 5). BaTiO3 and SiO2
frames come from the repository fixtures (tests/fixtures/data/PROVENANCE.md).
Units: P e·Å, Z* e, α e·Å²/V.
"""

from pathlib import Path

import ase.io
import pytest

from tace_jax.train import fit
from tace_jax.train.config_io import load_config

ROOT = Path(__file__).parents[2]
CONFIGS = ROOT / "tace_jax" / "configs"
FIXTURE = ROOT / "tests" / "fixtures" / "data" / "batio3_response_train3.xyz.xz"
SIO2 = ROOT / "tests" / "fixtures" / "data" / "sio2_response_2frames.xyz.xz"
TINY = [
    "model.cutoff=3.0",
    "model.num_layers=1",
    "model.num_channel=4",
    "model.lmax_node=1",
    "model.lmax_edge=1",
    "model.correlation=1",
    "model.radial_hidden=[4]",
    "model.readout_hidden=[4]",
    "max_steps=2",
    "batch_size=1",
    "ema_decay=null",
    "resume=false",
]


def _two_frames(src: Path, dst: Path) -> Path:
    ase.io.write(dst, ase.io.read(src, index=":2"), format="extxyz")
    return dst


@pytest.mark.parametrize("name", ["batio3_response", "sio2_response"])
def test_response_config_trains_two_steps(name, tmp_path):
    src = FIXTURE if name == "batio3_response" else SIO2
    data = _two_frames(src, tmp_path / "two.xyz")
    cfg = load_config(
        CONFIGS / f"{name}.yaml",
        [*TINY, f"train_file={data}", f"valid_file={data}", f"output_dir={tmp_path / 'run'}"],
    )
    assert "electric_field" in cfg.model["equivariant_embeddings"]
    for term in ("polarization", "born_effective_charges", "conservative_polarizability"):
        assert getattr(cfg, f"{term}_weight") > 0
    result = fit(cfg)
    assert Path(result.model_path).exists()
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert rows, "no metrics written"
    assert "valid_born_effective_charges_mae" in rows[-1]
    assert "valid_polarization_mae" in rows[-1]
