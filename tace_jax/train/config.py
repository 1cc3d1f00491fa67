"""Training configuration: a validated dataclass, its JSON schema, YAML loading and overrides.

A config is a flat mapping of training options plus the nested ``model`` mapping (fields of
:class:`tace_jax.models.TACEConfig`). Load one with :func:`load_config`, which reads YAML,
applies ``key=value`` overrides (dotted keys for nested ``model.*``), and validates types and
ranges. Unknown keys raise :class:`ConfigError` with a suggestion.

Example::

    cfg = load_config("train.yaml", ["lr=1e-3", "model.num_channel=32"])
    print(json.dumps(train_config_schema(), indent=2))   # what `tace-jax train --schema` prints
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from tace_jax.data.structure import LABELS
from tace_jax.models import TACEConfig

__all__ = [
    "ConfigError",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "model_field_names",
    "train_config_schema",
]


class ConfigError(ValueError):
    """An invalid training configuration (unknown key, wrong type, bad value)."""


def _f(default, help: str, **kw):
    """A dataclass field with a help string (used for the schema and error messages)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class TrainConfig:
    """All options of a training run (units: eV, Å, seconds).

    Defaults follow ``docs/theory.md`` §5 (AdamW lr 4e-3, weight decay 1e-8, loss weights
    E/atom 1, F 8, S 8, EMA 0.995, clip 1, reduce-on-plateau factor 0.5 / patience 15 / min lr
    1e-6, early stopping 25 epochs). ``model`` holds :class:`tace_jax.models.TACEConfig`
    fields; its cutoff is ``model.cutoff``; ``atomic_numbers`` defaults to the elements of the
    training set.
    """

    # --- data -------------------------------------------------------------------------------
    train_file: str | None = _f(None, "Training data (extxyz/xyz/npz/...); required.")
    valid_file: str | None = _f(None, "Validation data; if null, split off valid_fraction.")
    valid_fraction: float = _f(
        0.05,
        "Fraction of train_file used for validation when valid_file is null.",
        minimum=0.0,
        maximum=0.9,
    )
    test_file: str | None = _f(None, "Test data evaluated with the best EMA model at the end.")
    energy_key: str = _f("energy", "Name of the total-energy label in the data files.")
    forces_key: str = _f("forces", "Name of the forces label.")
    stress_key: str | None = _f("stress", "Name of the stress label (eV/Å³, ASE sign).")
    virials_key: str | None = _f("virials", "Name of the virials label (eV), if any.")
    data_options: dict = _f({}, "Extra keyword arguments for the dataset reader (e.g. units).")
    require_labels: list = _f(
        [],
        "Labels every train/valid frame must have (e.g. [energy, forces]); a frame without "
        "one is an error. Otherwise such frames are counted in the log and masked out of "
        "that loss term.",
    )
    # --- model and statistics ----------------------------------------------------------------
    model: dict = _f({}, "TACEConfig fields (cutoff, num_layers, num_channel, ...).")
    e0s: Any = _f(
        "least_squares",
        "Atomic reference energies E0: 'least_squares' (fit to the training energies; "
        "non-periodic single-atom frames fix their element's E0), a mapping {Z: energy in "
        "eV}, or the path of a file of isolated atoms (one atom and its energy per frame).",
    )
    scale_type: str | float | None = _f(
        "rms_forces", "Scale σ: rms_forces, rms_forces_by_element, a number, or null (σ = 1)."
    )
    shift_type: str | float | None = _f(
        "mean_delta_energy_per_atom", "Shift μ: mean_delta_energy_per_atom, a number, or null."
    )
    avg_num_neighbors: float | None = _f(None, "Override n̄ (default: from the training set).")
    # --- optimisation ------------------------------------------------------------------------
    batch_size: int = _f(5, "Graphs per optimiser step (all devices together).", minimum=1)
    valid_batch_size: int | None = _f(None, "Graphs per evaluation batch (default 4×batch).")
    max_epochs: int = _f(1000, "Maximum number of epochs.", minimum=1)
    max_steps: int | None = _f(None, "Stop after this many optimiser steps (optional).")
    max_time: float | None = _f(
        None,
        "Wall-clock budget in seconds for this invocation; "
        "when it runs out, training stops cleanly, checkpoints and "
        "exports.",
        minimum=0.0,
    )
    lr: float = _f(4e-3, "Peak learning rate (AdamW).", exclusiveMinimum=0.0)
    weight_decay: float = _f(1e-8, "Decoupled (AdamW) weight decay.", minimum=0.0)
    amsgrad: bool = _f(False, "Use the AMSGrad variant of Adam.")
    clip: float | None = _f(1.0, "Global gradient-norm clipping (null/0: off).", minimum=0.0)
    loss: Literal["mse", "mae", "huber"] = _f(
        "mse", "Loss type; 'huber' uses MACE's conditional force Huber."
    )
    huber_delta: float = _f(0.01, "Huber δ.", exclusiveMinimum=0.0)
    energy_weight: float = _f(1.0, "Weight of the energy-per-atom term.", minimum=0.0)
    forces_weight: float = _f(8.0, "Weight of the forces term.", minimum=0.0)
    stress_weight: float = _f(
        8.0, "Weight of the stress term (used where labels exist).", minimum=0.0
    )
    virials_weight: float = _f(0.0, "Weight of the virials-per-atom term.", minimum=0.0)
    ema_decay: float | None = _f(0.995, "EMA decay d (null: no EMA).", minimum=0.0, maximum=1.0)
    scheduler: Literal["plateau", "cosine", "constant"] = _f("plateau", "Learning-rate schedule.")
    warmup_steps: int = _f(0, "Linear warm-up steps (all schedules).", minimum=0)
    plateau_factor: float = _f(0.5, "Reduce-on-plateau factor.", exclusiveMinimum=0.0, maximum=1.0)
    plateau_patience: int = _f(15, "Reduce-on-plateau patience (evaluations).", minimum=0)
    min_lr: float = _f(1e-6, "Lower bound of the learning rate (plateau and cosine).", minimum=0.0)
    patience: int | None = _f(
        25,
        "Early stopping after this many evaluations without "
        "improvement of the validation loss (null: off).",
        minimum=1,
    )
    # --- bookkeeping ---------------------------------------------------------------------------
    eval_every: int = _f(1, "Evaluate on the validation set every this many epochs.", minimum=1)
    checkpoint_every: int = _f(
        0, "Also checkpoint every this many steps (0: epoch end only).", minimum=0
    )
    keep_checkpoints: int = _f(3, "Number of checkpoints kept.", minimum=1)
    resume: bool = _f(True, "Resume from the newest checkpoint in output_dir if present.")
    seed: int = _f(0, "Seed for initialisation, splitting and shuffling.")
    dtype: Literal["float32", "float64"] = _f("float32", "Floating-point precision.")
    num_devices: int | None = _f(None, "Data-parallel devices (default: all local).", minimum=1)
    output_dir: str = _f("runs/tace", "Directory for checkpoints, logs and the exported model.")
    progress: bool = _f(True, "Show a tqdm progress bar.")

    def __post_init__(self):
        _validate(self)

    def to_dict(self) -> dict:
        """Plain-python mapping (round-trips through :func:`config_from_dict`)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def model_field_names() -> tuple[str, ...]:
    """Field names of :class:`tace_jax.models.TACEConfig` (the valid ``model.*`` keys)."""
    return tuple(f.name for f in dataclasses.fields(TACEConfig))


def _unknown(kind: str, key, known) -> ConfigError:
    close = difflib.get_close_matches(str(key), list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown {kind} key {key!r}{hint}")


def _type_ok(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if origin is Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _validate(cfg: TrainConfig) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not _type_ok(value, hints[f.name]):
            raise ConfigError(
                f"config key {f.name!r}: {value!r} is not of type {_type_name(hints[f.name])}"
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = f.metadata.get("minimum"), f.metadata.get("maximum")
            xlo = f.metadata.get("exclusiveMinimum")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConfigError(f"config key {f.name!r}: {value!r} outside [{lo}, {hi}]")
            if xlo is not None and value <= xlo:
                raise ConfigError(f"config key {f.name!r}: {value!r} must be > {xlo}")
    if isinstance(cfg.e0s, str) and cfg.e0s != "least_squares":
        e0s = cfg.e0s.strip()
        if not e0s or not ("." in e0s or "/" in e0s or e0s.startswith("bundled:")):
            raise ConfigError(
                f"config key 'e0s': {cfg.e0s!r} is not 'least_squares', a mapping "
                "{Z: energy} or the path of an isolated-atoms file (e.g. iso_atoms.xyz)"
            )
    for label in cfg.require_labels:
        if label not in LABELS:
            raise ConfigError(
                f"config key 'require_labels': unknown label {label!r}; known: {list(LABELS)}"
            )
    for name, options in (
        ("scale_type", ("rms_forces", "rms_forces_by_element")),
        ("shift_type", ("mean_delta_energy_per_atom",)),
    ):
        v = getattr(cfg, name)
        if isinstance(v, str) and v not in options:
            raise ConfigError(
                f"config key {name!r}: {v!r} is not one of {options}, a number or null"
            )
    if not isinstance(cfg.e0s, (str, dict)):
        raise ConfigError(f"config key 'e0s': expected a string or a mapping, got {cfg.e0s!r}")
    known = model_field_names()
    for k in cfg.model:
        if k not in known:
            raise _unknown("model", k, known)
    if cfg.energy_weight + cfg.forces_weight + cfg.stress_weight + cfg.virials_weight <= 0:
        raise ConfigError("all loss weights are zero")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def config_from_dict(d: dict) -> TrainConfig:
    """Build and validate a :class:`TrainConfig`; unknown keys raise :class:`ConfigError`."""
    if not isinstance(d, dict):
        raise ConfigError(f"a config must be a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for k in d:
        if k not in names:
            raise _unknown("config", k, names)
    d = dict(d)
    hints = typing.get_type_hints(TrainConfig)
    for k, v in d.items():  # YAML 1.1 reads "1e-3" as a string
        if isinstance(v, str) and _accepts_float(hints[k]):
            try:
                d[k] = float(v)
            except ValueError:
                pass
    if d.get("model") is None:
        d["model"] = {}
    if isinstance(d.get("e0s"), dict):  # YAML/JSON keys may be strings: "1" -> 1
        d["e0s"] = {(int(k) if str(k).isdigit() else k): v for k, v in d["e0s"].items()}
    return TrainConfig(**d)


def _accepts_float(tp) -> bool:
    if tp is float:
        return True
    if typing.get_origin(tp) in (Union, types.UnionType):
        return any(_accepts_float(a) for a in typing.get_args(tp))
    return False


def _parse_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML ``SafeLoader`` that rejects a key repeated in one mapping."""


def _unique_mapping(loader: _UniqueKeyLoader, node, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the base constructor reports it
            continue
        if first is not None:
            raise ConfigError(f"duplicate key {key!r} at lines {first} and {line}")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | Path):
    """Parse a YAML file; a duplicated key raises :class:`ConfigError` naming both lines."""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: config file not found")
    text = Path(path).read_text()
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e


def apply_overrides(d: dict, overrides) -> dict:
    """Apply ``key=value`` strings (values parsed as YAML; dotted keys go into nested maps)."""
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a mapping")
            node = node[p]
        node[parts[-1]] = _parse_value(text)
    return d


def load_config(path: str | Path | None = None, overrides=(), **updates) -> TrainConfig:
    """Read a YAML config (or start from defaults), apply overrides, validate.

    Args:
        path: YAML file; None starts from defaults.
        overrides: ``["key=value", "model.key=value", ...]``.
        **updates: further keys set directly (applied last).

    Raises:
        ConfigError: naming the file and the offending key.
    """
    base: dict = {}
    if path is not None:
        base = read_yaml(path) or {}
        if not isinstance(base, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    overrides = list(overrides or ())
    for item in overrides:
        try:
            apply_overrides({}, [item])
        except ConfigError as e:
            raise ConfigError(_named(item, e)) from None
    d = {**apply_overrides(base, overrides), **updates}
    try:
        return config_from_dict(d)
    except ConfigError as e:
        culprit = _blame_override({**base, **updates}, overrides, str(e))
        if culprit is not None:
            raise ConfigError(_named(culprit, e)) from None
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def _named(item: str, e: ConfigError) -> str:
    text = str(e)
    return text if text.startswith(f"override {item!r}") else f"override {item!r}: {text}"


def _blame_override(base: dict, overrides: list[str], error: str) -> str | None:
    """The override behind ``error`` (None: the file is to blame).

    An override whose key the error names; else, when the file alone is valid, the first
    override after which the config is invalid.
    """
    for item in overrides:
        if repr(item.split("=", 1)[0].strip().split(".")[-1]) in error:
            return item
    if overrides and _valid(base):
        d = base
        for item in overrides:
            d = apply_overrides(d, [item])
            if not _valid(d):
                return item
    return None


def _valid(d: dict) -> bool:
    try:
        config_from_dict(d)
    except ConfigError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# JSON schema
# ---------------------------------------------------------------------------------------------


def _json_type(tp) -> dict:
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if origin in (Union, types.UnionType):
        args = [_json_type(a) for a in typing.get_args(tp)]
        return {"anyOf": args}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    table = {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        dict: "object",
        list: "array",
    }
    return {"type": table.get(tp, "string")}


def _model_schema() -> dict:
    props = {}
    hints = typing.get_type_hints(TACEConfig)
    for f in dataclasses.fields(TACEConfig):
        entry = _json_type(hints.get(f.name, Any))
        if f.default is not dataclasses.MISSING:
            entry["default"] = _jsonable(f.default)
        props[f.name] = entry
    return {
        "type": "object",
        "description": "TACEConfig fields",
        "properties": props,
        "additionalProperties": False,
    }


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool, type(None), list, dict)):
        return v
    return str(v)


def train_config_schema() -> dict:
    """JSON schema (draft 2020-12) of the training config, with defaults and descriptions."""
    hints = typing.get_type_hints(TrainConfig)
    props = {}
    for f in dataclasses.fields(TrainConfig):
        entry = _json_type(hints[f.name])
        entry["description"] = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        entry["default"] = _jsonable(default)
        for k in ("minimum", "maximum", "exclusiveMinimum"):
            if k in f.metadata:
                entry[k] = f.metadata[k]
        props[f.name] = entry
    props["model"] = {**_model_schema(), "default": {}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "tace-jax training config",
        "type": "object",
        "properties": props,
        "required": ["train_file"],
        "additionalProperties": False,
    }
