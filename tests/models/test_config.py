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
    bad["long_range"]["les"]["enable"] = True
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
