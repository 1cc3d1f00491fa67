"""TrainConfig: validation, YAML loading, overrides and JSON schema."""

import json

import pytest

from tace_jax.train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    train_config_schema,
)

REQUIRED_KEYS = (
    "train_file",
    "valid_file",
    "valid_fraction",
    "test_file",
    "energy_key",
    "forces_key",
    "stress_key",
    "model",
    "batch_size",
    "max_epochs",
    "max_time",
    "lr",
    "seed",
    "dtype",
    "output_dir",
)


def test_defaults_follow_spec():
    cfg = TrainConfig()
    assert cfg.lr == 4e-3 and cfg.weight_decay == 1e-8 and cfg.ema_decay == 0.995
    assert (cfg.energy_weight, cfg.forces_weight, cfg.stress_weight) == (1.0, 8.0, 8.0)
    assert cfg.scheduler == "plateau" and cfg.plateau_factor == 0.5
    assert cfg.plateau_patience == 15 and cfg.patience == 25 and cfg.clip == 1.0
    assert cfg.dtype == "float32"


def test_unknown_key_suggests():
    with pytest.raises(ConfigError, match="unknown config key 'learning_rat'.*lr|learning_rat"):
        config_from_dict({"train_file": "x", "learning_rat": 1.0})
    with pytest.raises(ConfigError, match="max_epochs"):
        config_from_dict({"max_epoch": 3})


def test_unknown_model_key():
    with pytest.raises(ConfigError, match="unknown model key 'num_chanel'"):
        config_from_dict({"model": {"num_chanel": 8}})


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"lr": "fast"}, "'lr'"),
        ({"lr": -1.0}, "'lr'"),
        ({"batch_size": 0}, "'batch_size'"),
        ({"batch_size": 2.5}, "'batch_size'"),
        ({"dtype": "float16"}, "'dtype'"),
        ({"loss": "l3"}, "'loss'"),
        ({"e0s": "average_of_something"}, "'e0s'"),
        ({"scale_type": "bogus"}, "'scale_type'"),
        ({"energy_weight": 0, "forces_weight": 0, "stress_weight": 0}, "zero"),
    ],
)
def test_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(bad)


def test_overrides_and_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "train_file: a.xyz\nlr: 0.01\nmodel:\n  num_channel: 16\ne0s: {1: -13.6, 8: -2040}\n"
    )
    cfg = load_config(p, ["lr=1e-3", "model.num_layers=1", "max_time=60", "stress_key=null"])
    assert cfg.lr == 1e-3 and cfg.max_time == 60 and cfg.stress_key is None
    assert cfg.model == {"num_channel": 16, "num_layers": 1}
    assert cfg.e0s == {1: -13.6, 8: -2040}
    d = apply_overrides({"model": {"a": 1}}, ["model.b=[1, 2]"])
    assert d == {"model": {"a": 1, "b": [1, 2]}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["lr"])
    with pytest.raises(ConfigError, match="^override 'nonsense_key=1': unknown config key"):
        load_config(p, ["nonsense_key=1"])
    p.write_text("train_file: a.xyz\nlr: fast\n")  # the file is to blame, not the override
    with pytest.raises(ConfigError, match=f"^{p}: config key 'lr'"):
        load_config(p, ["batch_size=2"])


@pytest.mark.parametrize(
    "override, match",
    [
        ("lr=abc", "^override 'lr=abc': config key 'lr': 'abc' is not of type float"),
        ("batch_size=0", r"^override 'batch_size=0': config key 'batch_size': 0 outside"),
        ("model.num_chanel=8", "^override 'model.num_chanel=8': unknown model key 'num_chanel'"),
        ("lr", "^override 'lr' is not of the form key=value"),
        ("max_epochs.x=1", "^override 'max_epochs.x=1': 'max_epochs' is not a mapping"),
    ],
)
def test_override_errors_name_the_override(tmp_path, override, match):
    p = tmp_path / "c.yaml"
    p.write_text("train_file: a.xyz\nmax_epochs: 3\n")
    with pytest.raises(ConfigError, match=match):
        load_config(p, [override])


def test_duplicate_yaml_keys(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("train_file: a.xyz\nlr: 0.01\nmodel:\n  cutoff: 4\n  cutoff: 5\n")
    with pytest.raises(ConfigError, match=f"^{p}: duplicate key 'cutoff' at lines 4 and 5"):
        load_config(p)
    p.write_text("train_file: a.xyz\nlr: 0.01\nbatch_size: 2\nlr: 0.02\n")
    with pytest.raises(ConfigError, match=f"^{p}: duplicate key 'lr' at lines 2 and 4"):
        load_config(p)
    p.write_text("base: &b {lr: 0.01}\n")  # anchors and plain YAML still load
    with pytest.raises(ConfigError, match="unknown config key 'base'"):
        load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_require_labels_and_e0s_options():
    cfg = config_from_dict({"require_labels": ["energy", "forces"], "e0s": "iso_atoms.xyz"})
    assert cfg.require_labels == ["energy", "forces"] and cfg.e0s == "iso_atoms.xyz"
    with pytest.raises(ConfigError, match="'require_labels': unknown label 'energies'"):
        config_from_dict({"require_labels": ["energies"]})


def test_roundtrip():
    cfg = config_from_dict({"train_file": "x", "model": {"num_channel": 8}, "max_time": 5.0})
    assert config_from_dict(cfg.to_dict()) == cfg


def test_schema():
    schema = train_config_schema()
    json.dumps(schema)  # serialisable
    props = schema["properties"]
    for k in REQUIRED_KEYS:
        assert k in props, k
    assert schema["additionalProperties"] is False
    sources = [alt["required"] for alt in schema["oneOf"]]
    assert sources == [["train_file"], ["train_files"], ["train_dir"]]
    assert all(s[0] in props for s in sources)
    assert props["lr"]["default"] == 4e-3 and props["lr"]["description"]
    assert props["dtype"]["enum"] == ["float32", "float64"]
    assert "num_channel" in props["model"]["properties"]
