"""LoRA adapters (tace_jax.train.lora): exact step-0 identity, merging, adapters-only files."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
import pytest
from ase.build import molecule
from flax import traverse_util

from tace_jax.inference import Potential
from tace_jax.models import TACE, Statistics, TACEConfig
from tace_jax.properties import compute_properties
from tace_jax.train.finetune import BaseModel, FinetuneModel
from tace_jax.train.lora import (
    apply_adapters,
    init_lora,
    load_adapters,
    lora_target_paths,
    merge_lora,
    path_name,
    save_adapters,
)

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
LORA = {"rank": 2, "alpha": 4.0, "targets": ["channel_linears", "element_linears"]}


def _stats():
    return Statistics([[-13.6, -1027.0, -2038.0]], [[0.7, 0.8, 0.9]], [[0.1, 0.0, -0.1]], 3.0)


_CASES: dict = {}


def _setup(dtype, key=None):
    """(base Potential, graph, LoRA wrapper), built once per dtype (compiles are slow)."""
    if dtype not in _CASES:
        cfg = TACEConfig.from_dict(MODEL)
        pot = Potential.init(cfg, _stats(), jax.random.key(7), dtype=dtype)
        graph = pot.graph_from_atoms([molecule("CH3CH2OH"), molecule("H2O")])
        base = BaseModel(cfg, pot.statistics, jax.device_get(pot.variables), "memory")
        wrapper = FinetuneModel(TACE(cfg, pot.statistics), base, lora=LORA)
        _CASES[dtype] = pot, graph, wrapper
    return _CASES[dtype]


def _predict(apply_fn, variables, graph):
    out = _compute(apply_fn, variables, graph)
    return np.asarray(out["energy"]), np.asarray(out["forces"])


@functools.partial(jax.jit, static_argnums=0)
def _compute(apply_fn, variables, graph):
    return compute_properties(apply_fn, variables, graph, ("energy", "forces"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step0_reproduces_base_bit_for_bit(dtype, key):
    pot, graph, wrapper = _setup(dtype, key)
    variables = wrapper.init(jax.random.key(1), graph)
    assert set(variables["params"]) == {"base", "lora"}
    b = [
        x
        for p, x in traverse_util.flatten_dict(variables["params"]["lora"]).items()
        if p[-1] == "b"
    ]
    a = [
        x
        for p, x in traverse_util.flatten_dict(variables["params"]["lora"]).items()
        if p[-1] == "a"
    ]
    assert b and all(not np.any(x) for x in b) and all(np.any(x) for x in a)
    e0, f0 = _predict(pot.model.apply, pot.variables, graph)
    e1, f1 = _predict(wrapper.apply, variables, graph)
    assert e0.dtype == np.dtype(dtype) and np.all(np.isfinite(f0))
    np.testing.assert_array_equal(e1, e0)
    np.testing.assert_array_equal(f1, f0)
    # a non-zero B changes the model (the identity above is not vacuous)
    lora = jax.tree.map(lambda x: x + 0.05, variables["params"]["lora"])
    e2, _ = _predict(wrapper.apply, {"params": {**variables["params"], "lora": lora}}, graph)
    assert np.max(np.abs(e2 - e0)) > 1e-4


def test_targets_select_channel_and_element_linears(key):
    _, _, wrapper = _setup("float64", key)
    params = wrapper.base.variables["params"]
    names = [path_name(p) for p in lora_target_paths(params, ["channel_linears"])]
    assert names and all(n.split("/")[1].startswith("linear_") for n in names)
    assert {"interaction_0/linear_up_0/weight", "product_0/linear_out_0/weight"} <= set(names)
    elem = [path_name(p) for p in lora_target_paths(params, ["element_linears"])]
    assert "interaction_1/sc_0/weights" in elem and "product_0/linears_1_0" in elem
    assert all(np.ndim(traverse_util.flatten_dict(params)[tuple(n.split("/"))]) == 3 for n in elem)
    with pytest.raises(ValueError, match="matches no parameter"):
        lora_target_paths(params, ["no_such_layer"])
    with pytest.raises(ValueError, match="needs a matrix"):
        lora_target_paths(params, ["linear_up_0/bias"])


def test_merge_is_w_plus_scaled_low_rank_per_element(key):
    w = {"layer": {"weights": jax.random.normal(key, (3, 5, 4))}}
    lora = init_lora(jax.random.key(2), w, [("layer", "weights")], 2, "float64")
    assert lora["layer"]["weights"]["a"].shape == (3, 5, 2)  # one adapter per element
    assert lora["layer"]["weights"]["b"].shape == (3, 2, 4)
    lora["layer"]["weights"]["b"] = jax.random.normal(jax.random.key(3), (3, 2, 4))
    merged = merge_lora(w, lora, 0.5)["layer"]["weights"]
    a, b = (np.asarray(lora["layer"]["weights"][k]) for k in "ab")
    for z in range(3):
        np.testing.assert_allclose(merged[z], w["layer"]["weights"][z] + 0.5 * a[z] @ b[z])
    with pytest.raises(KeyError, match="not a parameter"):
        merge_lora({"other": w["layer"]}, lora, 0.5)


def test_adapters_only_round_trip_and_merged_export(tmp_path, key):
    pot, graph, wrapper = _setup("float64", key)
    variables = wrapper.init(jax.random.key(1), graph)
    k = iter(jax.random.split(jax.random.key(4), 100))
    lora = jax.tree.map(
        lambda x: 0.1 * jax.random.normal(next(k), x.shape), variables["params"]["lora"]
    )
    variables = {"params": {**variables["params"], "lora": lora}}
    path = tmp_path / "adapters.npz"
    save_adapters(path, lora, LORA["rank"], LORA["alpha"])
    loaded, meta = load_adapters(path)
    assert meta["rank"] == 2 and meta["alpha"] == 4.0
    flat_a, flat_b = traverse_util.flatten_dict(lora), traverse_util.flatten_dict(loaded)
    assert flat_a.keys() == flat_b.keys()
    for p in flat_a:
        np.testing.assert_array_equal(np.asarray(flat_a[p]), flat_b[p])
    # the adapters file on the base == the wrapper == the exported (merged) model
    e_w, f_w = _predict(wrapper.apply, variables, graph)
    adapted = apply_adapters(pot, path)
    e_a, f_a = _predict(pot.model.apply, adapted.variables, graph)
    exported = wrapper.export_variables(variables, tmp_path / "model")
    assert (tmp_path / "lora_adapters.npz").is_file()
    e_m, f_m = _predict(pot.model.apply, exported, graph)
    for e, f in ((e_a, f_a), (e_m, f_m)):
        np.testing.assert_allclose(e, e_w, rtol=1e-13)
        np.testing.assert_allclose(f, f_w, rtol=1e-11, atol=1e-12)
    assert np.max(np.abs(e_w - _predict(pot.model.apply, pot.variables, graph)[0])) > 1e-4
    # the statistics of the fine-tuned model (e.g. a refitted E0) travel with the adapters
    e0 = np.asarray(pot.statistics.atomic_energies) + 0.25
    stats = dataclasses.replace(pot.statistics, atomic_energies=e0)
    save_adapters(tmp_path / "with_stats.npz", lora, LORA["rank"], LORA["alpha"], stats)
    assert apply_adapters(pot, tmp_path / "with_stats.npz").statistics == stats
    assert adapted.statistics == pot.statistics
    np.savez(tmp_path / "bad.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a LoRA adapters file"):
        load_adapters(tmp_path / "bad.npz")
