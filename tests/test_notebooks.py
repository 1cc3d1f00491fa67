"""Execute the notebooks end to end (nbclient); all four run in the default set.

These short runs spend most of their time compiling, so the kernels run with the XLA CPU
flags of ``FAST_COMPILE`` (no LLVM optimisation, the classic instead of the MLIR fusion
emitters: compile times about halved, slightly slower kernels, same results to round-off).
``quickstart`` runs with its environment knobs set to a one-layer model and a few training
steps; ``differentiable_md`` is small by default.
"""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


#: XLA flags for the notebook kernels (both are needed: the fusion emitters ignore the level)
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"

#: quickstart knobs for the test: a one-layer model, 150 optimiser steps, 200 MD steps
QUICKSTART_OVERRIDES = (
    "max_steps=150 progress=false model.num_layers=1 model.lmax_edge=1 model.num_channel=8 "
    "model.radial_hidden=[16] model.readout_hidden=[]"
)


def _execute(
    name: str, tmp_path, monkeypatch, env: dict, timeout: int = 1800, fast_compile: bool = True
):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    if fast_compile:
        monkeypatch.setenv("XLA_FLAGS", f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip())
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return nb


def _text(nb) -> str:
    return "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


def test_quickstart_notebook(tmp_path, monkeypatch):
    env = {
        "TACE_JAX_NB_MAX_TIME": 60,
        "TACE_JAX_NB_MD_STEPS": 200,
        "TACE_JAX_NB_OVERRIDES": QUICKSTART_OVERRIDES,
        "TACE_JAX_NB_OUT": tmp_path / "out",
    }
    nb = _execute("quickstart.ipynb", tmp_path, monkeypatch, env, timeout=600)
    assert (tmp_path / "out" / "train" / "model").exists()
    png = (tmp_path / "out" / "ethanol_spectrum.png").read_bytes()
    assert png[:4] == b"\x89PNG"
    text = _text(nb)
    assert "Zero-point energy" in text and "mean T" in text
    assert "layers=1" in text  # the overrides reached the training config
    assert "200 steps: mean T" in text
    assert float(text.split("Zero-point energy:")[1].split()[0]) > 0


def test_differentiable_md_notebook(tmp_path, monkeypatch):
    nb = _execute("differentiable_md.ipynb", tmp_path, monkeypatch, {}, timeout=600)
    text = _text(nb)
    assert text.count("finite difference") >= 3
    for line in ("d<E_pot>/dλ", "d<E_pot>/dε", "d<E_pot>/dθ·δ", "DiffTRe d<O>/dθ", "RDF peak"):
        assert line in text, line
    # the fit converged: a fresh trajectory at the fitted θ reproduces the target average
    diff = float(text.split("(difference")[1].split(")")[0])
    assert abs(diff) < 5e-3


def test_finetuning_notebook(tmp_path, monkeypatch):
    nb = _execute("finetuning.ipynb", tmp_path, monkeypatch, {}, timeout=600)
    text = _text(nb)
    assert "trainable of" in text and "adapted weights" in text
    diff = float(text.split("exported - base+adapters:")[1].split()[0])
    assert abs(diff) < 1e-5  # the exported (merged) model = base + the adapters file


def test_response_and_spectra_notebook(tmp_path, monkeypatch):
    env = {"TACE_JAX_NB_OUT": tmp_path / "out"}
    nb = _execute("response_and_spectra.ipynb", tmp_path, monkeypatch, env, timeout=600)
    assert (tmp_path / "out" / "train" / "model").exists()
    png = (tmp_path / "out" / "batio3_spectra.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 10_000
    text = _text(nb)
    for line in ("P      model", "acoustic sum rule", "modes [cm^-1]", "mean T", "MD IR peak"):
        assert line in text, line
    sum_rule = float(text.split("acoustic sum rule |Σ Z*| =")[1].split()[0])
    assert sum_rule < 1e-4
