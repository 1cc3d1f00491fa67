"""Training configuration: a validated dataclass (YAML, overrides, schema: :mod:`.config_io`).

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
from typing import Any, Literal, Union

from tace_jax.data.readers import DataKeys
from tace_jax.data.structure import LABELS
from tace_jax.models import TACEConfig

__all__ = [
    "ConfigError",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "model_field_names",
    "read_yaml",
    "train_config_schema",
]


#: Loss terms with a ``<term>_weight`` key (the order of ``tace_jax.train.loss.LOSS_PROPERTIES``).
_LOSS_TERMS = (
    "energy",
    "forces",
    "stress",
    "virials",
    "polarization",
    "conservative_polarizability",
    "born_effective_charges",
    "dipole",
    "polarizability",
    "hessian",
)


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
    # --- preprocessed shards (tace-jax preprocess; tace_jax/data/streaming.py) ---------------
    train_dir: str | None = _f(
        None,
        "Training data preprocessed by 'tace-jax preprocess' (streamed from disk, bounded "
        "memory); instead of train_file. Without valid_dir, valid_fraction is split off.",
    )
    valid_dir: str | None = _f(None, "Preprocessed validation data (with train_dir).")
    test_dir: str | None = _f(None, "Preprocessed test data (with train_dir).")
    stream_options: dict = _f(
        {},
        "train_dir loader: shuffle (buffer | global | none), buffer_size (structures), "
        "edge_budget (edges per batch; node/graph caps from a greedy pass), prefetch.",
    )
    # --- multi-fidelity (docs/theory.md §2.8–2.9; train/prepare.py, train/replay.py) ---------
    train_files: list = _f(
        [],
        "Multi-fidelity files pooled with train_file: a list of {file, level[, valid_file, "
        "test_file]}; every frame of a file gets its level (an integer or a name of "
        "data_options.levels), a frame whose own level key (data_options.level_key, default "
        "'level') differs is an error. train_file frames keep their own level key (0 without "
        "one); model.num_levels defaults to the highest level + 1.",
    )
    replay_model: str | None = _f(
        None,
        "Multi-head replay fine-tuning (python -m tace_jax.train.replay): the pretrained "
        "model that gets a new level, copied from level new_level_from and trained on "
        "train_file together with a replay_fraction of replay_file.",
    )
    replay_file: str | None = _f(None, "Old data, replayed at level new_level_from.")
    replay_fraction: float = _f(
        0.1, "Seeded fraction of replay_file replayed.", exclusiveMinimum=0.0, maximum=1.0
    )
    new_level_from: int = _f(0, "Level of replay_model copied into the new level.", minimum=0)
    new_level_e0: Literal["copy", "refit"] = _f(
        "copy",
        "E0 of the new level: copy (the new level starts equal to new_level_from) or refit "
        "(plus a least-squares fit of the new energies' residuals; for another energy zero).",
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
    # response terms (train/loss_response.py): label keys and weights; 0 = off
    polarization_key: str | None = _f("polarization", "Periodic polarization label (e·Å).")
    polarization_weight: float = _f(0.0, "Weight of P = −∂E/∂ℰ (quantum-folded).", minimum=0.0)
    conservative_polarizability_key: str | None = _f(
        None, "Key of the α label for ∂P/∂ℰ (null: polarizability_key; one label)."
    )
    conservative_polarizability_weight: float = _f(0.0, "Weight of α = ∂P/∂ℰ.", minimum=0.0)
    born_effective_charges_key: str | None = _f("born_effective_charges", "Z* label (e).")
    born_effective_charges_weight: float = _f(0.0, "Weight of Z* = ∂P/∂x.", minimum=0.0)
    dipole_key: str | None = _f("dipole", "Dipole label (e·Å).")
    dipole_weight: float = _f(0.0, "Dipole: trains P (field model) or direct_dipole.", minimum=0.0)
    polarizability_key: str | None = _f("polarizability", "Polarizability label (e·Å²/V).")
    polarizability_weight: float = _f(
        0.0, "Polarizability: trains ∂P/∂ℰ (field model) or direct_polarizability.", minimum=0.0
    )
    hessian_key: str | None = _f("hessian", "Hessian label ([n,3,n,3] or [3n,3n], eV/Å²).")
    hessian_weight: float = _f(0.0, "Weight of the random-Hessian-rows term.", minimum=0.0)
    hessian_samples: int = _f(2, "Random Hessian rows per structure and step.", minimum=1)
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
    device_prefetch: int = _f(
        2, "Training steps whose batches are placed on the devices ahead (0: off).", minimum=0
    )
    output_dir: str = _f("runs/tace", "Directory for checkpoints, logs and the exported model.")
    progress: bool = _f(True, "Show a tqdm progress bar.")
    finetune: dict = _f({}, "Fine-tuning: from, freeze, lora, e0 (see tace_jax.train.finetune).")

    def __post_init__(self):
        _validate(self)

    def to_dict(self) -> dict:
        """Plain-python mapping (round-trips through :func:`config_from_dict`)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def loss_weights(self) -> dict[str, float]:
        """``{loss term: weight}`` of every term of :data:`tace_jax.train.loss.LOSS_PROPERTIES`."""
        return {t: float(getattr(self, f"{t}_weight")) for t in _LOSS_TERMS}

    def label_keys(self) -> dict:
        """Reader key options (:class:`tace_jax.data.DataKeys`) of the response labels."""
        alpha = self.conservative_polarizability_key or self.polarizability_key
        keys = {
            "dipole_key": self.dipole_key,
            "polarizability_key": alpha,
            "born_charges_key": self.born_effective_charges_key,
            "polarization_key": self.polarization_key,
        }
        if "hessian_key" in {f.name for f in dataclasses.fields(DataKeys)}:
            keys["hessian_key"] = self.hessian_key
        return keys


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
    if cfg.train_dir and (cfg.train_file or cfg.train_files):
        raise ConfigError("config keys 'train_file' and 'train_dir': give exactly one of them")
    if not cfg.train_dir and (cfg.valid_dir or cfg.test_dir or cfg.stream_options):
        raise ConfigError("config keys 'valid_dir'/'test_dir'/'stream_options' need 'train_dir'")
    if cfg.train_dir and (cfg.valid_file or cfg.test_file or cfg.finetune):
        raise ConfigError(
            "config key 'train_dir': give valid_dir/test_dir (preprocessed), not "
            "valid_file/test_file; fine-tuning needs train_file"
        )
    known = model_field_names()
    for k in cfg.model:
        if k not in known:
            raise _unknown("model", k, known)
    if sum(cfg.loss_weights().values()) <= 0:
        raise ConfigError("all loss weights are zero")
    from .finetune import validate_finetune  # the finetune mapping (train/finetune.py)

    validate_finetune(cfg.finetune)
    a, b = cfg.conservative_polarizability_key, cfg.polarizability_key
    if a is not None and b is not None and a != b and cfg.polarizability_weight > 0:
        raise ConfigError(
            f"config keys 'conservative_polarizability_key' ({a!r}) and 'polarizability_key' "
            f"({b!r}) name different keys, but both terms read the one polarizability label"
        )


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


# YAML loading, overrides and the JSON schema live in config_io (re-exported; config_io imports
# this module, so the import stays at the bottom).
from .config_io import (  # noqa: E402
    apply_overrides,
    load_config,
    read_yaml,
    train_config_schema,
)
