"""Turn a :class:`~tace_jax.train.config.TrainConfig` into data, statistics and a model."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tace_jax.data import (
    DataError,
    DataSplits,
    GraphLoader,
    Structure,
    compute_statistics,
    load_splits,
    read_structures,
)
from tace_jax.models import Statistics, TACEConfig

from .config import ConfigError, TrainConfig
from .loss import LossConfig, terms_with_labels

__all__ = [
    "TrainingData",
    "build_loss_config",
    "build_model_config",
    "build_statistics",
    "check_levels",
    "label_report",
    "level_files",
    "load_data",
    "make_loaders",
    "read_levelled",
    "resolve_path",
    "settle_levels",
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


def read_options(cfg: TrainConfig) -> dict:
    """Reader keyword arguments of ``cfg``: label keys, ``data_options``, required labels."""
    options = {
        "energy_key": cfg.energy_key,
        "forces_key": cfg.forces_key,
        "stress_key": cfg.stress_key,
        "virials_key": cfg.virials_key,
        **cfg.label_keys(),  # response labels (train/config.py)
        **cfg.data_options,
    }
    if cfg.require_labels:
        options["require"] = tuple(
            dict.fromkeys((*options.get("require", ()), *cfg.require_labels))
        )
    return options


def load_data(cfg: TrainConfig) -> TrainingData:
    """Read and split the data files named in ``cfg`` (labels by ``*_key``).

    File names of the form ``bundled:<name>`` refer to the data sets shipped in
    ``tace_jax/resources`` (``tace_jax.data.list_bundled_datasets()``).

    Multi-fidelity (docs/theory.md §2.8–2.9): the frames of ``train_file`` (and of ``valid_file`` /
    ``test_file``) take their level from their level key (``data_options.level_key``, default
    ``level``; 0 without one); every frame of a ``train_files`` entry ``{file, level,
    valid_file, test_file}`` takes the entry's level, split into train/valid per entry.

    Raises:
        ConfigError: no training file, or a malformed ``train_files`` entry.
        DataError: unreadable data, or a frame whose own level disagrees with its file's.
    """
    if getattr(cfg, "train_dir", None):  # preprocessed shards (tace_jax/data/shard_data.py)
        from tace_jax.data.shard_data import StreamingData

        return StreamingData(
            cfg.train_dir, cfg.valid_dir, cfg.test_dir, cfg.valid_fraction, cfg.seed
        )
    entries = level_files(cfg)
    if not cfg.train_file and not entries:
        raise ConfigError("config key 'train_file' (or 'train_files') is required")
    options = read_options(cfg)
    data = TrainingData([], [], {})
    if cfg.train_file:
        _add_split(data, cfg, None, cfg.train_file, cfg.valid_file, cfg.test_file, options)
    else:
        for name, path in (("valid_file", cfg.valid_file), ("test_file", cfg.test_file)):
            if path:  # a top-level set of the train_files: frames carry their own level
                kw = {k: v for k, v in options.items() if not k.endswith("_indices")}
                got = read_levelled(resolve_path(path), None, **kw)
                if name == "valid_file":
                    data.valid.extend(got)
                else:
                    data.tests[_stem(path, data.tests)] = got
    for e in entries:
        valid, test = e.get("valid_file"), e.get("test_file")
        _add_split(data, cfg, e["level"], e["file"], valid, test, options)
    if not data.train:
        raise ConfigError(f"{cfg.train_file or entries[0]['file']}: no training structures")
    return data


#: ``levels`` offset that marks a frame whose level key is present (see :func:`read_levelled`).
_EXPLICIT = 1 << 30


def read_levelled(path, file_level: int | None = None, **read_kwargs) -> list[Structure]:
    """:func:`~tace_jax.data.read_structures` with a file-wide fidelity level.

    Without ``file_level`` a frame's level is its level key (0 without one). With it every
    frame gets ``file_level``, and a frame whose level key says otherwise raises (an explicit
    ``level: 0`` in a file of level 1 included).

    Args:
        path: the data file.
        file_level: the level of every frame (None: each frame's level key).
        **read_kwargs: for :func:`~tace_jax.data.read_structures` (``level_key``, ``levels``
            name → index, label keys, ``index``, ...).

    Raises:
        DataError: naming the file and frame of a conflicting level.
    """
    return settle_levels(read_structures(path, **_marked(read_kwargs)), file_level, path)


def _marked(read_kwargs: dict) -> dict:
    """Reader options whose ``levels`` mapping marks a present level key: the reader maps a
    value ``v`` found in the mapping to ``_EXPLICIT + v`` (name → index included), so that an
    absent key (level 0) and ``level: 0`` differ until :func:`settle_levels`."""
    kw = dict(read_kwargs)
    names = dict(kw.pop("levels", None) or {})
    marked = {k: _EXPLICIT + int(v) for k, v in names.items()}
    marked.setdefault(0, _EXPLICIT)
    kw["levels"] = marked
    return kw


def settle_levels(structures, file_level: int | None, path) -> list[Structure]:
    """Decode the marked levels of :func:`_marked` and apply a file-wide ``file_level``."""
    out = []
    for s in structures:
        own = s.level - _EXPLICIT if s.level >= _EXPLICIT else (s.level or None)
        if file_level is not None and own is not None and own != file_level:
            raise DataError(
                f"{s.where}: field 'level' is {own} but the file {path} is given level "
                f"{file_level} (config key 'train_files' or --level)"
            )
        level = file_level if file_level is not None else (own or 0)
        out.append(s if s.level == level else dataclasses.replace(s, level=level))
    return out


def _stem(path, taken) -> str:
    name = Path(str(path)).stem or str(path)
    base, k = name, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _add_split(data: TrainingData, cfg, level, train, valid, test, options) -> None:
    """Read one (train, valid, test) group at ``level`` (None: per-frame keys) into ``data``."""
    tests = None
    if test:
        tests = {_stem(test, data.tests): resolve_path(test)}
    splits: DataSplits = load_splits(
        resolve_path(train),
        resolve_path(valid) if valid else None,
        tests,
        valid_fraction=cfg.valid_fraction,
        seed=cfg.seed,
        **_marked(options),
    )
    data.train.extend(settle_levels(splits.train, level, train))
    data.valid.extend(settle_levels(splits.valid, level, valid or train))
    for name, frames in splits.tests.items():
        data.tests[name] = settle_levels(frames, level, test)


_ENTRY_KEYS = ("file", "level", "valid_file", "test_file")


def level_files(cfg: TrainConfig) -> list[dict]:
    """The validated ``train_files`` entries of ``cfg`` with integer levels.

    Each entry is a mapping ``{file, level[, valid_file, test_file]}``; ``level`` is an integer
    ≥ 0 or a name of ``data_options.levels``.

    Raises:
        ConfigError: naming the entry of a missing file, a bad level or an unknown key.
    """
    names = dict(cfg.data_options.get("levels") or {})
    out = []
    for k, e in enumerate(getattr(cfg, "train_files", None) or ()):
        where = f"config key 'train_files', entry {k}"
        if not isinstance(e, Mapping):
            raise ConfigError(f"{where}: expected a mapping {{file, level}}, got {e!r}")
        bad = [x for x in e if x not in _ENTRY_KEYS]
        if bad:
            raise ConfigError(f"{where}: unknown keys {bad}; known: {list(_ENTRY_KEYS)}")
        if not isinstance(e.get("file"), str) or not e["file"]:
            raise ConfigError(f"{where}: 'file' (a path) is required")
        level = e.get("level")
        if isinstance(level, str) and level in names:
            level = names[level]
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            known = f" or one of data_options.levels {sorted(names)}" if names else ""
            raise ConfigError(
                f"{where} ({e['file']}): 'level' must be an integer >= 0{known}, got {level!r}"
            )
        out.append({**e, "level": int(level)})
    return out


def build_model_config(cfg: TrainConfig, data: TrainingData) -> TACEConfig:
    """``TACEConfig`` from ``cfg.model``; ``atomic_numbers`` default to the data's elements and
    ``num_levels`` to one more than the highest level of the data.

    Raises:
        ConfigError: a bad model option.
        DataError: a frame whose level is ``>= model.num_levels`` (naming file and frame).
    """
    m = data.fill_model(dict(cfg.model)) if getattr(data, "streaming", False) else dict(cfg.model)
    if not m.get("atomic_numbers"):
        zs = set()
        for s in (*data.train, *data.valid):
            zs.update(int(z) for z in np.unique(s.numbers))
        m["atomic_numbers"] = sorted(zs)
    if m.get("num_levels") is None:
        everything = (*data.train, *data.valid, *(s for t in data.tests.values() for s in t))
        m["num_levels"] = max((s.level for s in everything), default=0) + 1
    try:
        model_cfg = TACEConfig.from_dict(m)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {e}") from e
    check_levels(data, model_cfg.num_levels)
    return model_cfg


def check_levels(data: TrainingData, num_levels: int) -> None:
    """Raise :class:`~tace_jax.data.DataError` naming the first frame (train, valid or test)
    whose fidelity level is not below ``num_levels``."""
    if getattr(data, "streaming", False):  # preprocessed shards: from the index arrays
        return data.check_levels(num_levels)
    for name, frames in (("train", data.train), ("valid", data.valid), *data.tests.items()):
        for s in frames:
            if s.level >= num_levels:
                raise DataError(
                    f"{s.where}: field 'level' is {s.level} but the model has "
                    f"model.num_levels = {num_levels} (levels 0..{num_levels - 1}; {name} set)"
                )


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


#: Labels whose absence from every frame is reported too (a weighted term that never applies is
#: most likely a wrong ``<property>_key``); stress and virials are absent from molecules.
ALWAYS_REPORTED = (
    "energy",
    "forces",
    "polarization",
    "polarizability",
    "born_charges",
    "dipole",
    "hessian",
)


def label_weights(cfg: TrainConfig) -> dict[str, float]:
    """Loss weight per data label (a :class:`~tace_jax.data.Structure` field): the largest
    weight of the loss terms that read it (``conservative_polarizability`` and
    ``polarizability`` both read ``polarizability``; ``born_effective_charges`` reads
    ``born_charges``)."""
    from .loss_response import RESPONSE_LABELS

    weights = {
        "energy": cfg.energy_weight,
        "forces": cfg.forces_weight,
        "stress": cfg.stress_weight,
        "virials": cfg.virials_weight,
    }
    for term, label in RESPONSE_LABELS.items():
        weights[label] = max(weights.get(label, 0.0), float(getattr(cfg, f"{term}_weight")))
    return weights


def label_report(cfg: TrainConfig, data: TrainingData) -> list[str]:
    """Lines counting the train/valid frames without each label that has a loss weight.

    Such frames are masked out of that loss term; ``require_labels`` makes them errors.
    """
    weights = label_weights(cfg)
    if getattr(data, "streaming", False):  # preprocessed shards: from the stored label masks
        return data.label_report(weights, ALWAYS_REPORTED)
    lines = []
    for name, frames in (("train", data.train), ("valid", data.valid)):
        if not frames:
            continue
        for label, w in weights.items():
            missing = sum(getattr(s, label) is None for s in frames)
            if w > 0 and 0 < missing and (missing < len(frames) or label in ALWAYS_REPORTED):
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
    stats = getattr(data, "compute_statistics", compute_statistics)(  # shards: stored sums
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
    weights = cfg.loss_weights()  # every term of LOSS_PROPERTIES (train/config.py)
    with_labels = terms_with_labels(available)
    weights = {k: float(w) for k, w in weights.items() if w > 0 and k in with_labels}
    if not weights:
        raise ConfigError(
            f"no loss term has both a non-zero weight and labels; labels found: {list(available)}"
        )
    return LossConfig(
        weights=weights,
        loss_type=cfg.loss,
        huber_delta=cfg.huber_delta,
        hessian_samples=cfg.hessian_samples,
    )


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
    if getattr(data, "streaming", False):  # preprocessed shards: StreamingLoader s
        return data.make_loaders(cfg, bs, vbs, common)
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
    notes += raw_stats.get("streaming", [])  # train_dir: loader budgets and padding efficiency
    if notes:
        print("\n".join(notes), flush=True)
        with open(output_dir / "train.log", "a") as f:
            f.write("".join(n + "\n" for n in notes))
    d = cfg.to_dict()
    d["model"] = model_cfg.to_dict()
    (output_dir / "config.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    (output_dir / "statistics.json").write_text(json.dumps(raw_stats, indent=1, default=float))
