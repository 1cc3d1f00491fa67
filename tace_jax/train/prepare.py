"""Turn a :class:`~tace_jax.train.config.TrainConfig` into data, statistics and a model."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tace_jax.data import (
    DataSplits,
    GraphLoader,
    Structure,
    compute_statistics,
    load_splits,
)
from tace_jax.models import Statistics, TACEConfig

from .config import ConfigError, TrainConfig
from .loss import LossConfig

__all__ = [
    "TrainingData",
    "build_loss_config",
    "build_model_config",
    "build_statistics",
    "label_report",
    "load_data",
    "make_loaders",
    "resolve_path",
    "to_model_statistics",
    "write_run_files",
]


@dataclasses.dataclass
class TrainingData:
    """Structures of a run: ``train``, ``valid`` and named ``tests``."""

    train: list[Structure]
    valid: list[Structure]
    tests: dict[str, list[Structure]]


def resolve_path(path: str | None) -> str | None:
    """``"bundled:<name>"`` → the path of a data set shipped with tace_jax; else unchanged."""
    if isinstance(path, str) and path.startswith("bundled:"):
        from tace_jax.data import bundled_dataset_path

        return str(bundled_dataset_path(path.split(":", 1)[1]))
    return path


def load_data(cfg: TrainConfig) -> TrainingData:
    """Read and split the data files named in ``cfg`` (labels by ``*_key``).

    File names of the form ``bundled:<name>`` refer to the data sets shipped in
    ``tace_jax/resources`` (``tace_jax.data.list_bundled_datasets()``).
    """
    if not cfg.train_file:
        raise ConfigError("config key 'train_file' is required")
    keys = {
        "energy_key": cfg.energy_key,
        "forces_key": cfg.forces_key,
        "stress_key": cfg.stress_key,
        "virials_key": cfg.virials_key,
    }
    options = dict(cfg.data_options)
    if cfg.require_labels:
        options["require"] = tuple(
            dict.fromkeys((*options.get("require", ()), *cfg.require_labels))
        )
    splits: DataSplits = load_splits(
        resolve_path(cfg.train_file),
        resolve_path(cfg.valid_file),
        resolve_path(cfg.test_file),
        valid_fraction=cfg.valid_fraction,
        seed=cfg.seed,
        **keys,
        **options,
    )
    if not splits.train:
        raise ConfigError(f"{cfg.train_file}: no training structures")
    return TrainingData(list(splits.train), list(splits.valid), dict(splits.tests))


def build_model_config(cfg: TrainConfig, data: TrainingData) -> TACEConfig:
    """``TACEConfig`` from ``cfg.model``; ``atomic_numbers`` default to the data's elements."""
    m = dict(cfg.model)
    if not m.get("atomic_numbers"):
        zs = set()
        for s in (*data.train, *data.valid):
            zs.update(int(z) for z in np.unique(s.numbers))
        m["atomic_numbers"] = sorted(zs)
    try:
        return TACEConfig.from_dict(m)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {e}") from e


def to_model_statistics(stats: Mapping) -> Statistics:
    """The model's :class:`~tace_jax.models.Statistics` from a
    :func:`tace_jax.data.compute_statistics` dict.

    A data set without any edge has ``avg_num_neighbors`` 0; the model never uses it then, and
    it becomes 1 (``Statistics`` requires a positive value).
    """
    avg = float(stats["avg_num_neighbors"])
    return Statistics(
        atomic_energies=stats["atomic_energies"],
        scale=stats["scale"],
        shift=stats["shift"],
        avg_num_neighbors=avg if avg > 0 else 1.0,
        e0_span=stats.get("e0_span"),
    )


def label_report(cfg: TrainConfig, data: TrainingData) -> list[str]:
    """Lines counting the train/valid frames without each label that has a loss weight.

    Such frames are masked out of that loss term; ``require_labels`` makes them errors.
    """
    weights = {
        "energy": cfg.energy_weight,
        "forces": cfg.forces_weight,
        "stress": cfg.stress_weight,
        "virials": cfg.virials_weight,
    }
    lines = []
    for name, frames in (("train", data.train), ("valid", data.valid)):
        if not frames:
            continue
        for label, w in weights.items():
            missing = sum(getattr(s, label) is None for s in frames)
            if w > 0 and 0 < missing and (missing < len(frames) or label in ("energy", "forces")):
                first = next(s.where for s in frames if getattr(s, label) is None)
                lines.append(
                    f"labels: {missing} of {len(frames)} {name} frames have no {label!r} "
                    f"(first: {first}); they are left out of the {label} loss "
                    "(config key require_labels makes this an error)"
                )
    return lines


def _e0s(cfg: TrainConfig):
    """``cfg.e0s`` with an e0s file read into ``{Z: E0}``."""
    if not isinstance(cfg.e0s, str) or cfg.e0s == "least_squares":
        return cfg.e0s
    from tace_jax.data import DataError
    from tace_jax.data.statistics import read_e0s_file

    path = resolve_path(cfg.e0s)
    if not Path(path).is_file():
        raise ConfigError(f"config key 'e0s': {cfg.e0s!r}: isolated-atoms file not found")
    try:
        return read_e0s_file(path, cfg.energy_key, cfg.data_options.get("units"))
    except DataError as e:
        raise ConfigError(f"config key 'e0s': {e}") from e


def build_statistics(
    cfg: TrainConfig, model_cfg: TACEConfig, data: TrainingData, neighbor_cache=None
) -> tuple[Statistics, dict]:
    """Dataset statistics of the training set → (model ``Statistics``, raw dict)."""
    stats = compute_statistics(
        data.train,
        model_cfg.atomic_numbers,
        model_cfg.cutoff,
        atomic_energies=_e0s(cfg),
        scale_type=cfg.scale_type,
        shift_type=cfg.shift_type,
        num_levels=model_cfg.num_levels,
        neighbors=neighbor_cache,
    )
    if cfg.avg_num_neighbors is not None:
        stats["avg_num_neighbors"] = float(cfg.avg_num_neighbors)
    stats["warnings"] = [*stats.get("warnings", []), *label_report(cfg, data)]
    return to_model_statistics(stats), stats


def build_loss_config(cfg: TrainConfig, available: tuple[str, ...]) -> LossConfig:
    """Loss terms with non-zero weight whose labels exist in the training data."""
    weights = {
        "energy": cfg.energy_weight,
        "forces": cfg.forces_weight,
        "stress": cfg.stress_weight,
        "virials": cfg.virials_weight,
    }
    weights = {k: float(w) for k, w in weights.items() if w > 0 and k in available}
    if not weights:
        raise ConfigError(
            f"no loss term has both a non-zero weight and labels; labels found: {list(available)}"
        )
    return LossConfig(weights=weights, loss_type=cfg.loss, huber_delta=cfg.huber_delta)


def make_loaders(
    cfg: TrainConfig,
    model_cfg: TACEConfig,
    data: TrainingData,
    num_devices: int,
    neighbor_cache=None,
):
    """``(train_loader, valid_loader | None, {name: test_loader})`` (per-device batch sizes)."""
    if cfg.batch_size % num_devices:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the {num_devices} devices"
        )
    bs = cfg.batch_size // num_devices
    vbs = max(1, (cfg.valid_batch_size or 4 * cfg.batch_size) // num_devices)
    common = dict(
        cutoff=model_cfg.cutoff,
        atomic_numbers=model_cfg.atomic_numbers,
        dtype=cfg.dtype,
        neighbor_cache=neighbor_cache,
        inputs=model_cfg.input_names,  # the one input assembler: exactly what the model reads
        input_limits=model_cfg.input_limits,
    )
    train = GraphLoader(data.train, batch_size=bs, shuffle=True, seed=cfg.seed, **common)

    def evaluator(structures):
        if not structures:
            return None
        return GraphLoader(
            structures, batch_size=min(vbs, len(structures)), shuffle=False, **common
        )

    return train, evaluator(data.valid), {k: evaluator(v) for k, v in data.tests.items() if v}


def write_run_files(
    output_dir: Path, cfg: TrainConfig, model_cfg: TACEConfig, raw_stats: dict
) -> None:
    """Write the resolved config and statistics next to the checkpoints; print the set-up
    warnings (underdetermined E0s, missing labels) and append them to ``train.log``."""
    import yaml

    output_dir.mkdir(parents=True, exist_ok=True)
    notes = [f"warning: {w}" for w in raw_stats.get("warnings", [])]
    if notes:
        print("\n".join(notes), flush=True)
        with open(output_dir / "train.log", "a") as f:
            f.write("".join(n + "\n" for n in notes))
    d = cfg.to_dict()
    d["model"] = model_cfg.to_dict()
    (output_dir / "config.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    (output_dir / "statistics.json").write_text(json.dumps(raw_stats, indent=1, default=float))
