"""Execute the notebooks end to end (nbclient).

``response_and_spectra`` and ``finetuning`` run in the default set (about a minute of CPU each
on 2 cores); the others train or compile longer and are slow-marked.
"""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _execute(name: str, tmp_path, monkeypatch, env: dict, timeout: int = 1800):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return nb


@pytest.mark.slow
def test_quickstart_notebook(tmp_path, monkeypatch):
    env = {
        "TACE_JAX_NB_MAX_TIME": 60,
        "TACE_JAX_NB_MD_STEPS": 400,
        "TACE_JAX_NB_OUT": tmp_path / "out",
    }
    nb = _execute("quickstart.ipynb", tmp_path, monkeypatch, env)
    assert (tmp_path / "out" / "train" / "model").exists()
    assert (tmp_path / "out" / "ethanol_spectrum.png").exists()
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "Zero-point energy" in text and "mean T" in text


@pytest.mark.slow
def test_differentiable_md_notebook(tmp_path, monkeypatch):
    nb = _execute("differentiable_md.ipynb", tmp_path, monkeypatch, {})
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert text.count("finite difference") >= 3


def test_finetuning_notebook(tmp_path, monkeypatch):
    nb = _execute("finetuning.ipynb", tmp_path, monkeypatch, {}, timeout=600)
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "trainable of" in text and "adapted weights" in text
    diff = float(text.split("exported - base+adapters:")[1].split()[0])
    assert abs(diff) < 1e-5  # the exported (merged) model = base + the adapters file


def test_response_and_spectra_notebook(tmp_path, monkeypatch):
    env = {"TACE_JAX_NB_OUT": tmp_path / "out"}
    nb = _execute("response_and_spectra.ipynb", tmp_path, monkeypatch, env, timeout=600)
    assert (tmp_path / "out" / "train" / "model").exists()
    png = (tmp_path / "out" / "batio3_spectra.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 10_000
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    for line in ("P      model", "acoustic sum rule", "modes [cm^-1]", "mean T", "MD IR peak"):
        assert line in text, line
    sum_rule = float(text.split("acoustic sum rule |Σ Z*| =")[1].split()[0])
    assert sum_rule < 1e-4
