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
    splits: DataSplits = load_splits(
        resolve_path(cfg.train_file),
        resolve_path(cfg.valid_file),
        resolve_path(cfg.test_file),
        valid_fraction=cfg.valid_fraction,
        seed=cfg.seed,
        **keys,
        **cfg.data_options,
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
    )


def build_statistics(
    cfg: TrainConfig, model_cfg: TACEConfig, data: TrainingData, neighbor_cache=None
) -> tuple[Statistics, dict]:
    """Dataset statistics of the training set → (model ``Statistics``, raw dict)."""
    stats = compute_statistics(
        data.train,
        model_cfg.atomic_numbers,
        model_cfg.cutoff,
        atomic_energies=cfg.e0s,
        scale_type=cfg.scale_type,
        shift_type=cfg.shift_type,
        num_levels=model_cfg.num_levels,
        neighbors=neighbor_cache,
    )
    if cfg.avg_num_neighbors is not None:
        stats["avg_num_neighbors"] = float(cfg.avg_num_neighbors)
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
    """Write the resolved config and statistics next to the checkpoints."""
    import yaml

    output_dir.mkdir(parents=True, exist_ok=True)
    d = cfg.to_dict()
    d["model"] = model_cfg.to_dict()
    (output_dir / "config.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    (output_dir / "statistics.json").write_text(json.dumps(raw_stats, indent=1, default=float))
