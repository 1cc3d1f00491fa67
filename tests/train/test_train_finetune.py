"""Fine-tuning (tace_jax.train.finetune): the config, frozen parameters, LoRA through fit()."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ase.build import molecule
from flax import traverse_util

from tace_jax.inference import Potential
from tace_jax.models import TACE, Statistics, TACEConfig
from tace_jax.train import ConfigError, config_from_dict, fit
from tace_jax.train.finetune import (
    BaseModel,
    FinetuneModel,
    count_parameters,
    freeze_labels,
    load_base,
    validate_finetune,
)
from tace_jax.train.lora import apply_adapters
from tace_jax.train.optimizer import FROZEN, TRAINABLE, make_optimizer

MODEL = dict(
    cutoff=4.0,
    num_layers=2,
    correlation=2,
    num_channel=4,
    lmax_node=1,
    lmax_edge=1,
    radial_hidden=[8],
    readout_hidden=[4],
    zbl=False,
    atomic_numbers=[1, 6, 8],
)
FREEZE = ["embeddings", "first_interaction", "radial"]


def _tree(key):
    """A parameter tree with TACE's names (no model needed)."""
    shapes = {
        "node_embedding/weight": (3, 4),
        "interaction_0/linear_up_0/weight": (4, 4),
        "interaction_0/radial_net/weight_0": (8, 8),
        "interaction_1/radial_net/weight_0": (8, 8),
        "interaction_1/sc_0/weights": (3, 4, 4),
        "product_0/linears_1_0": (3, 4, 4),
        "energy_readout_0/weight_0": (4, 1),
    }
    keys = jax.random.split(key, len(shapes))
    flat = {
        tuple(k.split("/")): jax.random.normal(kk, s) for kk, (k, s) in zip(keys, shapes.items())
    }
    return traverse_util.unflatten_dict(flat)


def _frozen_paths(labels):
    return {"/".join(p) for p, v in traverse_util.flatten_dict(labels).items() if v == FROZEN}


def test_validate_finetune_defaults_and_errors():
    assert validate_finetune({}) == {}
    d = validate_finetune({"from": "base.tace", "lora": {"rank": 3}})
    assert d["lora"] == {
        "rank": 3,
        "alpha": 3.0,
        "targets": ["channel_linears", "element_linears"],
    }
    assert d["e0"] == "base" and d["freeze"] == []
    bad = [
        ({"from": "m", "frezee": []}, "did you mean freeze"),
        ({"freeze": ["radial"]}, "'finetune.from' is required"),
        ({"from": "m", "lora": {"rank": 0}}, "rank"),
        ({"from": "m", "lora": {"rank": 2, "alpha": -1}}, "alpha"),
        ({"from": "m", "lora": {"ranks": 2}}, "did you mean rank"),
        ({"from": "m", "lora": {}, "freeze": ["radial"]}, "whole base model is frozen"),
        ({"from": "m", "freeze": ["(unclosed"]}, "not a regular expression"),
        ({"from": "m", "e0": "average"}, "'base' or 'refit'"),
        ({"from": ["a.npz"]}, r"\[npz, json\]"),
    ]
    for spec, match in bad:
        with pytest.raises(ConfigError, match=match):
            validate_finetune(spec)


def test_config_field_is_validated_at_load(tmp_path):
    base = {"train_file": "x.xyz", "output_dir": str(tmp_path)}
    cfg = config_from_dict({**base, "finetune": {"from": "m.tace", "freeze": ["radial"]}})
    assert cfg.finetune["freeze"] == ["radial"]
    with pytest.raises(ConfigError, match="did you mean lora"):
        config_from_dict({**base, "finetune": {"from": "m.tace", "loar": {}}})


def test_freeze_labels_aliases_and_regex(key):
    params = _tree(key)
    labels = freeze_labels(params, FREEZE)
    assert _frozen_paths(labels) == {
        "node_embedding/weight",
        "interaction_0/linear_up_0/weight",
        "interaction_0/radial_net/weight_0",
        "interaction_1/radial_net/weight_0",
    }
    assert _frozen_paths(freeze_labels(params, [r"^product_\d+/"])) == {"product_0/linears_1_0"}
    trainable, total = count_parameters(params, labels)
    assert total == sum(x.size for x in jax.tree.leaves(params))
    assert trainable == 3 * 16 + 3 * 16 + 4  # sc, product linears, readout
    with pytest.raises(ConfigError, match="matches no parameter"):
        freeze_labels(params, ["uie"])
    with pytest.raises(ConfigError, match="every parameter"):
        freeze_labels(params, ["."])


def test_frozen_leaves_have_no_state_and_stay_exactly_equal(key):
    params = _tree(key)
    labels = freeze_labels(params, FREEZE)
    opt = make_optimizer(1e-2, weight_decay=1e-2, clip=1.0, dtype="float64", labels=labels)
    state = opt.init(params)
    frozen_size = sum(
        x.size for x, lab in zip(jax.tree.leaves(params), jax.tree.leaves(labels)) if lab == FROZEN
    )
    trainable, total = count_parameters(params, labels)
    assert trainable == total - frozen_size
    state_size = sum(np.size(x) for x in jax.tree.leaves(state))
    assert state_size - 2 * trainable < 10  # Adam moments of the trainable leaves + scalars
    p = params
    for i in range(3):
        grads = jax.tree.map(lambda x, i=i: jnp.cos(x + i), p)
        updates, state = opt.update(grads, state, p)
        p = optax.apply_updates(p, updates)
    flat0, flat1 = traverse_util.flatten_dict(params), traverse_util.flatten_dict(p)
    for path, lab in traverse_util.flatten_dict(labels).items():
        if lab == FROZEN:
            np.testing.assert_array_equal(flat1[path], flat0[path])
        else:
            assert lab == TRAINABLE and np.max(np.abs(flat1[path] - flat0[path])) > 1e-3


# ------------------------------------------------------------------------- through fit()


def _base_file(tmp_path):
    cfg = TACEConfig.from_dict(MODEL)
    stats = Statistics([[-13.6, -1027.0, -2038.0]], [[0.5, 0.5, 0.5]], [[0.0, 0.0, 0.0]], 4.0)
    pot = Potential.init(cfg, stats, jax.random.key(3), dtype="float64")
    pot.save(tmp_path / "base.tace")
    return pot, str(tmp_path / "base.tace")


def _ft_config(tmp_path, name, finetune, **kw):
    d = {
        "train_file": "bundled:rmd17_ethanol_train",
        "data_options": {"index": "0:6"},
        "valid_fraction": 0.0,
        "batch_size": 3,
        "max_steps": 4,
        "lr": 0.05,
        "ema_decay": None,
        "dtype": "float64",
        "progress": False,
        "output_dir": str(tmp_path / name),
        "finetune": finetune,
    }
    d.update(kw)
    return d


@pytest.mark.slow
def test_fit_with_frozen_layers(tmp_path, capsys):
    base, path = _base_file(tmp_path)
    res = fit(_ft_config(tmp_path, "frozen", {"from": path, "freeze": FREEZE}))
    base_flat = traverse_util.flatten_dict(jax.device_get(base.variables["params"]))
    trained = traverse_util.flatten_dict(jax.device_get(res.state.params))
    exported = traverse_util.flatten_dict(jax.device_get(res.potential.variables["params"]))
    labels = freeze_labels(base.variables["params"], FREEZE)
    frozen = {p for p, v in traverse_util.flatten_dict(labels).items() if v == FROZEN}
    assert frozen and trained.keys() == base_flat.keys()
    for p in base_flat:
        if p in frozen:  # exact equality in the state and in the exported model
            np.testing.assert_array_equal(trained[p], base_flat[p])
            np.testing.assert_array_equal(exported[p], base_flat[p])
        elif p[-1] != "bias":
            assert np.max(np.abs(trained[p] - base_flat[p])) > 0, p
    # no optimiser state for frozen leaves: only the Adam moments of the trainable ones
    trainable, total = count_parameters(base.variables["params"], labels)
    state_size = sum(np.size(x) for x in jax.tree.leaves(res.state.opt_state))
    assert state_size - 2 * trainable < 10 and trainable < total
    report = json.loads((res.output_dir / "statistics.json").read_text())["finetune"]
    assert report["trainable_parameters"] == trainable and report["total_parameters"] == total
    assert f"{trainable} trainable of {total} parameters" in capsys.readouterr().out
    assert res.potential.statistics == base.statistics  # e0: base keeps the statistics


@pytest.mark.slow
def test_fit_with_lora_exports_merged_model_and_adapters(tmp_path):
    base, path = _base_file(tmp_path)
    lora = {"rank": 2, "alpha": 4.0, "targets": ["channel_linears", "element_linears"]}
    d = _ft_config(tmp_path, "lora", {"from": path, "lora": lora, "e0": "refit"})
    res = fit(d)
    params = jax.device_get(res.state.params)
    assert set(params) == {"base", "lora"}
    for a, b in zip(jax.tree.leaves(params["base"]), jax.tree.leaves(base.variables["params"])):
        np.testing.assert_array_equal(a, b)  # the base is frozen
    assert any(
        np.any(x) for p, x in traverse_util.flatten_dict(params["lora"]).items() if p[-1] == "b"
    )
    n_lora = sum(np.size(x) for x in jax.tree.leaves(params["lora"]))
    report = json.loads((res.output_dir / "statistics.json").read_text())["finetune"]
    assert report["trainable_parameters"] == n_lora < report["total_parameters"]
    # the exported (merged) model == the wrapper on the trained state == base + adapters file
    spec = validate_finetune(d["finetune"])
    bm = BaseModel(base.config, res.potential.statistics, jax.device_get(base.variables), path)
    wrapper = FinetuneModel(TACE(base.config, res.potential.statistics), bm, lora=spec["lora"])
    atoms = [molecule("CH3CH2OH")]
    graph = res.potential.graph_from_atoms(atoms)
    wrapped = wrapper.apply(jax.device_get(res.state.variables()), graph)["energy"]
    merged = res.potential.apply(graph)["energy"]
    np.testing.assert_allclose(merged, wrapped, rtol=1e-13)
    adapted = apply_adapters(base, res.output_dir / "lora_adapters.npz")  # with the refit E0
    e_a = adapted.predict(atoms, ("energy", "forces"))[0]
    e_m = res.potential.predict(atoms, ("energy", "forces"))[0]
    np.testing.assert_allclose(e_a["energy"], e_m["energy"], rtol=1e-13)
    np.testing.assert_allclose(e_a["forces"], e_m["forces"], rtol=1e-10, atol=1e-12)
    # e0: refit changed E0 (the σ, μ, n̄ of the base are kept)
    st = res.potential.statistics
    assert st.atomic_energies != base.statistics.atomic_energies
    assert st.scale == base.statistics.scale and st.shift == base.statistics.shift


def test_load_base_from_reference_pair_and_errors(tmp_path):
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    npz, js = fixtures / "tace_embed_dev.npz", fixtures / "tace_embed_dev.json"
    a = load_base({"from": str(npz)})  # the json next to it
    b = load_base({"from": [str(npz), str(js)]})
    assert a.config == b.config and a.fingerprint() == b.fingerprint()
    assert a.config.num_elements == len(a.statistics.scale[0])
    n = sum(np.size(x) for x in jax.tree.leaves(a.variables["params"]))
    assert n > 0 and len(a.fingerprint()) == 40
    with pytest.raises(ConfigError, match="not found"):
        load_base({"from": str(tmp_path / "missing.tace")})
    with pytest.raises(ConfigError, match="not found"):
        load_base({"from": str(tmp_path / "missing.npz")})
    (tmp_path / "junk.tace").write_text("not a model")
    with pytest.raises(ConfigError, match="cannot read the base model"):
        load_base({"from": str(tmp_path / "junk.tace")})


def test_finetune_from_torch_checkpoint(tmp_path, monkeypatch):
    """``finetune.from`` a reference PyTorch TACE checkpoint (through the converter): the base
    equals tace's own ASE calculator, LoRA at step 0 is that model, and training runs.

    Needs the ``[torch]`` extra and ``tace==0.1.0`` (skipped without them)."""
    import os

    pytest.importorskip("torch")
    pytest.importorskip("tace")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.syspath_prepend(os.path.join(root, "benchmarks"))
    import check_torch_import as chk
    from tace.interface.ase.calculator import TACEAseCalc

    js = os.path.join(root, "tests", "fixtures", "tace_tiny_l2.json")
    model, meta = chk.build_reference_model(js)
    paths = chk.save_formats(model, meta, str(tmp_path), "tiny")
    calc = TACEAseCalc(paths["state"], dtype="float64", device="cpu")
    base = load_base({"from": paths["state"]})
    pot = Potential(base.config, base.statistics, base.variables, dtype="float64")
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc
    e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
    out = pot.predict(atoms, ("energy", "forces"))
    assert abs(out["energy"] - e_ref) < 1e-10
    np.testing.assert_allclose(out["forces"], f_ref, rtol=0, atol=1e-10)
    lora = {"rank": 2, "alpha": 4.0}
    res = fit(_ft_config(tmp_path, "torch_lora", {"from": paths["state"], "lora": lora}))
    assert res.steps == 4 and np.isfinite(res.potential.predict(atoms, ("energy",))["energy"])
    # step 0 of a LoRA fine-tune is the torch model exactly (adapters start at zero)
    res0 = fit(
        _ft_config(tmp_path, "torch_lora0", {"from": paths["state"], "lora": lora}, max_steps=0)
    )
    e0 = res0.potential.predict(atoms, ("energy",))["energy"]
    assert abs(e0 - e_ref) < 1e-10
