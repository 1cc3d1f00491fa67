"""TACEConfig and Statistics: defaults, validation, serialisation, reference import."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tace_testutils import load_fixture

from tace_jax.models import Statistics, TACEConfig
from tace_jax.models.reference import config_from_reference


def test_defaults_are_reference_yaml():
    cfg = TACEConfig(atomic_numbers=(1, 8))
    assert cfg.cutoff == 6.0 and cfg.num_layers == 2 and cfg.correlation == 3
    assert cfg.num_channel == 48 and cfg.num_channel_hidden == 48
    assert (cfg.lmax_node, cfg.lmax_edge) == (2, 3)
    assert cfg.bias and cfg.zbl and cfg.use_all_layer
    assert (cfg.num_radial_basis, cfg.polynomial_cutoff) == (8, 5)
    assert cfg.radial_hidden == (64, 64, 64) and cfg.readout_hidden == (16,)
    assert cfg.inter_l1l2 is None and cfg.prod_l1l2 is None and cfg.prod_l3l1 is None
    assert cfg.targets == ("energy",) and cfg.target_ranks == (0,)
    assert cfg.output_ranks(0) == (0, 1, 2) and cfg.output_ranks(1) == (0,)
    assert cfg.input_ranks(0) == (0,) and cfg.input_ranks(1) == (0, 1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.cutoff = 5.0  # type: ignore[misc]


def test_target_ranks():
    cfg = TACEConfig(atomic_numbers=(1,), targets=("energy", "direct_forces"))
    assert cfg.target_ranks == (0, 1)
    cfg = TACEConfig(atomic_numbers=(1,), targets=("energy", "direct_polarizability"))
    assert cfg.target_ranks == (0, 2)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(atomic_numbers=()), "atomic_numbers"),
        (dict(atomic_numbers=(8, 1)), "sorted"),
        (dict(atomic_numbers=(1, 1)), "duplicates"),
        (dict(atomic_numbers=(0,)), "1..118"),
        (dict(cutoff=0.0), "cutoff"),
        (dict(cutoff=-1.0), "cutoff"),
        (dict(lmax_node=3, lmax_edge=2), "L_n"),
        (dict(correlation=0), "correlation"),
        (dict(num_layers=0), "num_layers"),
        (dict(num_channel=0), "num_channel"),
        (dict(lmax_edge=-1, lmax_node=0), "lmax_edge"),
        (dict(inter_l1l2="<>"), "inter_l1l2"),
        (dict(prod_l1l2="lt"), "prod_l1l2"),
        (dict(prod_l3l1="x"), "prod_l3l1"),
        (dict(targets=("direct_forces",)), "energy"),
        (dict(targets=("energy", "forces")), "unknown target"),
        (dict(targets=("energy", "direct_polarizability"), lmax_node=1), "L_n"),
        (dict(targets=("energy", "direct_forces"), lmax_node=0, lmax_edge=1), "L_n"),
        (dict(use_multi_head=True), "num_levels"),
        (dict(radial_act="relu"), "radial_act"),
        (dict(radial_hidden=(0,)), "radial_hidden"),
    ],
)
def test_validation(kw, match):
    kw = {"atomic_numbers": (1, 8), **kw}
    with pytest.raises(ValueError, match=match):
        TACEConfig(**kw)


def test_dict_roundtrip_is_json():
    cfg = TACEConfig(
        atomic_numbers=(1, 6, 8),
        targets=("energy", "direct_dipole"),
        prod_l1l2="<=",
        radial_hidden=(32, 32),
    )
    d = json.loads(json.dumps(cfg.to_dict()))
    assert TACEConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        TACEConfig.from_dict({**d, "nope": 1})


@pytest.mark.parametrize("variant", ["tiny_l2", "default"])
def test_from_reference(variant):
    _, meta = load_fixture(variant)
    cfg = config_from_reference(meta)
    mc = meta["model_config"]
    assert cfg.atomic_numbers == tuple(meta["atomic_numbers"])
    assert cfg.cutoff == mc["cutoff"] and cfg.num_channel == mc["num_channel"]
    assert (cfg.lmax_node, cfg.lmax_edge) == (mc["Lmax"], mc["lmax"])
    assert cfg.radial_hidden == tuple(mc["radial_mlp"]["hidden"])
    assert cfg.zbl == mc["short_range"]["zbl"]["enable"]
    assert cfg.targets == ("energy",)
    bad = json.loads(json.dumps(mc))
    bad["long_range"]["les"]["enable"] = True  # charge-only LES is supported (test_les_model)
    bad["long_range"]["les"]["les_arguments"]["use_atomwise"] = True
    with pytest.raises(NotImplementedError, match="les"):
        TACEConfig.from_reference(bad, meta["atomic_numbers"])


def test_statistics():
    st = Statistics.default(3)
    assert st.atomic_energies == ((0.0, 0.0, 0.0),) and st.scale == ((1.0, 1.0, 1.0),)
    assert st.avg_num_neighbors == 1.0 and st.num_levels == 1 and st.num_elements == 3
    st2 = Statistics([[1.0, 2.0]], [[0.5, 0.7]], [[0.0, 0.1]], 12.5)
    assert Statistics.from_dict(json.loads(json.dumps(st2.to_dict()))) == st2
    with pytest.raises(ValueError, match="avg_num_neighbors"):
        Statistics([[1.0]], [[1.0]], [[0.0]], 0.0)
    with pytest.raises(ValueError, match="share a shape"):
        Statistics([[1.0, 2.0]], [[1.0]], [[0.0]], 1.0)
    with pytest.raises(ValueError, match="levels, elements"):
        st2.check_compatible(3, 1)
    _, meta = load_fixture("default")
    ref = Statistics.from_reference(meta["statistics"], meta["atomic_numbers"])
    assert ref.scale[0] == (0.7, 1.3, 1.1, 0.9, 1.2) and ref.avg_num_neighbors == 32.0


EMB_VARIANTS = ("field_dev", "field_gate_dev", "embed_dev", "multihead_dev")


def _meta(variant):
    import os

    from tace_testutils import FIXTURES

    with open(os.path.join(FIXTURES, f"tace_{variant}.json")) as f:
        return json.load(f)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(invariant_embeddings=("spin",)), "unknown input 'spin'"),
        (dict(invariant_embeddings=("level",)), "num_embeddings"),
        (dict(invariant_embeddings=({"name": "charges", "num_embeddings": 2},)), "only for"),
        (dict(invariant_embeddings=({"name": "charges", "act": "relu"},)), "act"),
        (dict(invariant_embeddings=("charges", "charges")), "duplicate"),
        (dict(invariant_embeddings=({"name": "charges", "bogus": 1},)), "unknown options"),
        (dict(invariant_embeddings="charges"), "sequence"),
        (dict(equivariant_embeddings=("charges",)), "unknown input 'charges'"),
        (dict(equivariant_embeddings=({"name": "electric_field", "gate": "relu"},)), "gate"),
        (
            dict(equivariant_embeddings=({"name": "electric_field", "normalizer": "nan"},)),
            "finite",
        ),
        (
            dict(equivariant_embeddings=("electric_field",), lmax_edge=0, lmax_node=0),
            "lmax_edge",
        ),
        (dict(uie_readout=True), "needs at least one invariant"),
        (dict(uie_readout=1, invariant_embeddings=("charges",)), "bool"),
        (dict(charge_head="qeq"), "charge_head"),
    ],
)
def test_embedding_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TACEConfig(atomic_numbers=(1, 8), **kw)


def test_embedding_fields_roundtrip_and_input_names():
    cfg = TACEConfig(
        atomic_numbers=(1, 8),
        targets=("energy", "direct_dipole", "direct_virials"),
        invariant_embeddings={
            "level": {"enable": True, "num_embeddings": 3},
            "spin_on": {"enable": False, "num_embeddings": 2},
            "total_charge": {"enable": True, "act": "silu"},
        },
        equivariant_embeddings=(("electric_field", {"gate": "tanh", "linear": True}),),
        uie_readout=True,
        charge_head="uniform_distribution",
        num_levels=2,
    )
    assert [e.name for e in cfg.invariant_embeddings] == ["level", "total_charge"]
    assert cfg.equivariant_embeddings[0].gate == "tanh" and cfg.equivariant_embeddings[0].linear
    assert cfg.input_names == ("level", "total_charge", "electric_field", "charges")
    assert cfg.input_limits == {"level": 2}
    assert cfg.outputs == ("direct_dipole", "direct_virials", "direct_stress", "charges")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["invariant_embeddings"][0] == {"name": "level", "num_embeddings": 3, "act": "silu"}
    assert TACEConfig.from_dict(d) == cfg
    hash(cfg)  # usable as a static jit argument / Flax attribute
    assert TACEConfig(atomic_numbers=(1,)).input_names == ()
    assert TACEConfig(atomic_numbers=(1,), charge_head="lagrangian").input_names == (
        "total_charge",
    )


@pytest.mark.parametrize("variant", EMB_VARIANTS)
def test_from_reference_embedding_fixtures(variant):
    meta = _meta(variant)
    cfg = config_from_reference(meta)
    ue = meta["model_config"]["universal_embedding"]
    enabled = [k for k, v in ue["invariant"].items() if v["enable"]]
    assert [e.name for e in cfg.invariant_embeddings] == enabled
    enabled = [k for k, v in ue["equivariant"].items() if v["enable"]]
    assert [e.name for e in cfg.equivariant_embeddings] == enabled
    assert cfg.uie_readout == meta["model_config"]["readout_emlp"]["enable_uie_readout"]
    assert cfg.num_levels == meta["model_config"]["num_levels"]
    assert cfg.charge_head is None
    if variant == "field_gate_dev":
        e = cfg.equivariant_embeddings[0]
        assert (e.normalizer, e.gate, e.linear) == (0.5, "tanh", True)
    if variant == "embed_dev":
        assert cfg.input_limits == {"level": 2, "spin_multiplicity": 3}
    if variant == "field_dev":
        assert cfg.targets == (
            "energy",
            "direct_forces",
            "direct_dipole",
            "direct_polarizability",
        )
    charged = TACEConfig.from_reference(
        meta["model_config"], meta["atomic_numbers"], ["energy", "charges"]
    )
    assert charged.charge_head == "lagrangian" and "total_charge" in charged.input_names


def test_statistics_levels_and_shift():
    meta = _meta("multihead_dev")
    zs = meta["atomic_numbers"]
    st = Statistics.from_reference(meta["statistics"], zs, "mean_delta_energy_per_atom")
    assert st.num_levels == 3 and st.shift[1][0] == -0.15 and st.scale[2][0] == 1.2
    assert Statistics.from_reference(meta["statistics"], zs).shift == ((0.0,) * 5,) * 3
    back = Statistics.from_reference(st.to_reference(zs), zs, "mean_delta_energy_per_atom")
    assert back == st
    with pytest.raises(ValueError, match="shift_type"):
        Statistics.from_reference(meta["statistics"], zs, "median")
    with pytest.raises(ValueError, match="no entry for Z"):
        Statistics.from_reference(meta["statistics"], [*zs, 92])
    import numpy as np
    from tace_testutils import FIXTURES

    with np.load(f"{FIXTURES}/tace_multihead_dev.npz") as z:
        buffers = {k[2:]: z[k] for k in z.files if k.startswith("b/")}
    assert Statistics.from_buffers(buffers) == st
    with pytest.raises(ValueError, match="missing"):
        Statistics.from_buffers({})
