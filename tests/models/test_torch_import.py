"""Tests of tace_jax.models.torch_import (PyTorch TACE 0.1.0 checkpoint converter).

The first group needs no torch: the checkpoint layouts are rebuilt as plain dicts of numpy arrays
from the tiny_l2 fixture. The last test does the real round trip and is skipped without
torch + tace.
"""

from __future__ import annotations

import copy
import json
import os
import sys

import numpy as np
import pytest
from ase import Atoms
from tace_testutils import fixture_paths, load_fixture

from tace_jax.models.torch_import import (
    TORCH_HINT,
    checkpoint_to_arrays,
    collapse_per_layer,
    convert_torch_checkpoint,
    normalize_state_dict,
    split_state_dict,
    write_reference,
)

_NAME = "readout_fn.descriptor.node_embedding.mlp.0.weight"


def _fixture_state():
    z, meta = load_fixture("tiny_l2")
    sd = {k[2:]: v for k, v in z.items() if k[:2] in ("w/", "b/")}
    params = {k[2:] for k in z if k.startswith("w/")}
    return z, meta, sd, params


def _expanded(mc):
    """The model_config as TACEV1 rewrites it (per-layer lists), as saved in -state.pt."""
    mc = copy.deepcopy(mc)
    n = mc["num_layers"]
    for sec, key in (("prod", "correlation"), ("prod", "l1l2"), ("prod", "l3l1")):
        mc[sec][key] = [mc[sec][key]] * n
    mc["inter"]["l1l2"] = [mc["inter"]["l1l2"]] * n
    mc["radial_mlp"]["hidden"] = [list(mc["radial_mlp"]["hidden"])] * n
    return mc


def test_normalize_strips_prefixes():
    for name in (
        "model." + _NAME,
        "module.model." + _NAME,
        "_orig_mod." + _NAME,
        _NAME,
        _NAME[len("readout_fn.") :],
    ):
        assert list(normalize_state_dict({name: 1})) == [_NAME]
    with pytest.raises(ValueError, match="not a TACE"):
        normalize_state_dict({"model.encoder.weight": 1})
    with pytest.raises(ValueError, match="collides"):
        normalize_state_dict({"model." + _NAME: 1, _NAME: 2})


def test_split_matches_fixture_parameters():
    _, _, sd, params = _fixture_state()
    w, b = split_state_dict(sd)
    assert set(w) == params
    assert set(b) == set(sd) - params
    w2, _ = split_state_dict(sd, {_NAME})
    assert set(w2) == {_NAME}


def test_collapse_per_layer():
    _, meta, _, _ = _fixture_state()
    mc = meta["model_config"]
    assert collapse_per_layer(_expanded(mc)) == json.loads(json.dumps(mc))
    assert collapse_per_layer(mc) == json.loads(json.dumps(mc))
    bad = _expanded(mc)
    bad["prod"]["correlation"] = [3, 2]
    with pytest.raises(NotImplementedError, match="correlation"):
        collapse_per_layer(bad)


def _check_energies(npz, js, z, meta):
    from tace_jax.inference import Potential

    pot = Potential.from_reference(npz, js, dtype="float64")
    for name in ("hcooh", "si8"):
        s = meta["systems"][name]
        atoms = Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])
        out = pot.predict(atoms, properties=("energy", "forces"))
        np.testing.assert_allclose(out["energy"], z[f"{name}/energy"][0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(out["forces"], z[f"{name}/forces"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("layout", ["ckpt", "ckpt_ema", "state", "bare"])
def test_layouts_round_trip(tmp_path, layout):
    z, meta, sd, params = _fixture_state()
    mc = meta["model_config"]
    config = None
    if layout.startswith("ckpt"):
        ckpt_sd = {"model." + k: v for k, v in sd.items()}
        obj = {
            "state_dict": ckpt_sd,
            "hyper_parameters": {
                "cfg": {"model": {"config": mc}, "callbacks": {}},
                "statistics": meta["statistics"],
            },
        }
        if layout == "ckpt_ema":  # raw weights wrong, EMA shadow weights right
            order = [k for k in sd if k in params]
            obj["ema_state_dict"] = {"shadow_params": [sd[k] for k in order]}
            obj["state_dict"] = {
                k: v + 1.0 if k[len("model.") :] in params else v for k, v in ckpt_sd.items()
            }
    elif layout == "state":
        obj = {
            "state_dict": sd,
            "cfg": _expanded(mc),
            "target_property": meta["target_property"],
            "embedding_property": [],
            "statistics": meta["statistics"],
        }
    else:
        obj, config = sd, fixture_paths("tiny_l2")[1]
    w, b, out_meta = checkpoint_to_arrays(obj, config=config)
    assert set(w) == params
    assert out_meta["used_ema"] == (layout == "ckpt_ema")
    assert out_meta["atomic_numbers"] == meta["atomic_numbers"]
    npz, js = str(tmp_path / "sub" / "m.npz"), str(tmp_path / "sub" / "m.json")
    write_reference(w, b, out_meta, npz, js)
    _check_energies(npz, js, z, meta)


def test_bare_state_dict_needs_config():
    _, _, sd, _ = _fixture_state()
    with pytest.raises(ValueError, match="config="):
        checkpoint_to_arrays(sd)


def test_missing_torch_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install tace-jax\[torch\]"):
        convert_torch_checkpoint(tmp_path / "x.ckpt", tmp_path / "x.npz")
    assert "tace-jax[torch]" in TORCH_HINT


def test_convert_cli_reports_missing_torch(tmp_path, monkeypatch, capsys):
    from tace_jax.cli.convert import main

    monkeypatch.setitem(sys.modules, "torch", None)
    assert main([str(tmp_path / "x.ckpt"), str(tmp_path / "out")]) == 1
    assert "tace-jax[torch]" in capsys.readouterr().err


def test_real_torch_checkpoints(tmp_path, monkeypatch):
    """tace builds + saves a model; the converted one matches tace's ASE calculator."""
    pytest.importorskip("torch")
    pytest.importorskip("tace")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.syspath_prepend(os.path.join(root, "benchmarks"))
    import check_torch_import as chk
    from tace.interface.ase.calculator import TACEAseCalc

    from tace_jax.cli.convert import main
    from tace_jax.inference import Potential
    from tace_jax.models.torch_import import load_torch_checkpoint

    js = fixture_paths("tiny_l2")[1]
    model, meta = chk.build_reference_model(js)
    paths = chk.save_formats(model, meta, str(tmp_path), "tiny")
    calc = TACEAseCalc(paths["state"], dtype="float64", device="cpu")
    for kind, path in paths.items():
        loaded = load_torch_checkpoint(path, config=js if kind == "bare" else None)
        pot = Potential(*loaded, dtype="float64")
        for _, atoms in chk.systems(meta):
            atoms.calc = calc
            e, f = atoms.get_potential_energy(), atoms.get_forces()
            out = pot.predict(atoms, properties=("energy", "forces"))
            assert abs(out["energy"] - e) < 1e-10, kind
            np.testing.assert_allclose(out["forces"], f, rtol=0, atol=1e-10)
    # whole-model pickle read without tace installed (stand-in classes)
    for mod in [m for m in sys.modules if m == "tace" or m.startswith("tace.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "tace", None)
    prefix = str(tmp_path / "cli" / "whole")
    assert main([paths["whole"], prefix, "--save", str(tmp_path / "whole.model")]) == 0
    assert Potential.load(str(tmp_path / "whole.model")).config == pot.config


@pytest.mark.parametrize("variant", ["field_gate_dev", "embed_dev", "multihead_dev"])
@pytest.mark.parametrize("layout", ["state", "bare"])
def test_embedding_fixtures_convert(tmp_path, variant, layout):
    """Converter output of the embedding/multi-head fixtures loads to the same model."""
    import jax
    from tace_testutils import FIXTURES

    from tace_jax.models import load_reference

    npz = os.path.join(FIXTURES, f"tace_{variant}.npz")
    js = os.path.join(FIXTURES, f"tace_{variant}.json")
    with np.load(npz) as f:
        z = {k: f[k] for k in f.files}
    with open(js) as f:
        meta = json.load(f)
    sd = {"model." + k[2:]: v for k, v in z.items() if k[:2] in ("w/", "b/")}
    if layout == "state":
        obj, config = {"state_dict": sd, "cfg": meta["model_config"]}, None
        obj["target_property"] = meta["target_property"]
    else:
        obj, config = sd, js
    w, b, out_meta = checkpoint_to_arrays(obj, config=config)
    assert set(w) == {k[2:] for k in z if k.startswith("w/")}
    out_npz, out_js = str(tmp_path / "m.npz"), str(tmp_path / "m.json")
    write_reference(w, b, out_meta, out_npz, out_js)
    cfg0, st0, v0 = load_reference(npz, js)
    cfg1, st1, v1 = load_reference(out_npz, out_js)
    assert cfg1 == cfg0 and st1 == st0
    jax.tree.map(np.testing.assert_array_equal, v1, v0)


def test_buffer_check_accepts_float32_reference_buffers_and_rejects_wrong_ones():
    """A float32 reference model stores its constant buffers in float32: accepted when they are
    the float32 rounding of the expected values, rejected when any entry is off."""
    from tace_jax.models import TACEConfig
    from tace_jax.models.reference import _D, _P, _check_buffers
    from tace_jax.ops import COVALENT_RADII

    cfg = TACEConfig(atomic_numbers=(1, 6, 8))
    rad = np.asarray(COVALENT_RADII[:10], np.float64)
    bw = np.arange(1, cfg.num_radial_basis + 1) * np.pi / cfg.cutoff
    bw32 = (np.arange(1, cfg.num_radial_basis + 1, dtype=np.float32) * np.float32(np.pi)) / (
        np.float32(cfg.cutoff)
    )
    for r, b in ((rad, bw), (rad.astype(np.float32), bw32)):
        _check_buffers({_P + "zbl.covalent_radii": r, _D + bw_key(): b}, cfg)
    bad_r = rad.copy()
    bad_r[3] *= 1 + 1e-5
    with pytest.raises(ValueError, match="covalent radii"):
        _check_buffers({_P + "zbl.covalent_radii": bad_r}, cfg)
    bad_b = bw.copy()
    bad_b[1] *= 1 + 1e-5
    with pytest.raises(ValueError, match="Bessel"):
        _check_buffers({_D + bw_key(): bad_b}, cfg)


def bw_key() -> str:
    return "radial_embedding.radial_fn.bessel_weights"
