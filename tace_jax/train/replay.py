"""Multi-head replay fine-tuning: a new fidelity level grown from an old one (arXiv 2509.14961,
multi-fidelity training; multi-head readouts and per-level E0/σ/μ: docs/theory.md §2.8–2.9).

A trained model with ``M`` levels gets level ``M``, initialised as an exact copy of level
``new_level_from`` (its readout head, its row of the level embedding table and its E0/σ/μ
rows), and is then trained on the new data at level ``M`` *together with* a random subset of
the old data at level ``new_level_from`` (the replay set), so that the shared layers keep
serving the old level while the new head learns the new reference::

    replay_model: runs/pbe/model     # the pretrained Potential (or its output directory)
    train_file: ccsd.xyz             # the new level's data (level M)
    replay_file: pbe_train.xyz       # the old data; a seeded subset is replayed
    replay_fraction: 0.2
    new_level_from: 0
    new_level_e0: refit              # or copy (then level M equals level 0 exactly at step 0)

Run it with ``python -m tace_jax.train.replay CONFIG.yaml [key=value ...]`` or
:func:`fit_replay`. The model becomes multi-head (``use_multi_head``, one readout per level);
the model section of the config is taken from ``replay_model``. ``new_level_e0: refit`` adds
to the copied E0 row the minimum-norm least-squares correction that fits the base model's
level-``new_level_from`` residuals on the new training energies (only the composition
directions the new data determine change).

Growing a readout: a multi-head readout keeps one hidden block and one output column per level
(:mod:`tace_jax.nn.readout`); the new level's block is a copy of the source level's, and the
copied weights are rescaled by ``√(M+1)/√M`` where a forward-time ``α = 1/√fan`` counts the
heads, so that the effective weights (and the outputs of every old level) are unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from tace_jax.data.graph import single_atom_graph
from tace_jax.models import TACE, Statistics, TACEConfig

from .config import ConfigError, TrainConfig, apply_overrides, config_from_dict, load_config
from .prepare import TrainingData, load_data, read_levelled, read_options, resolve_path

__all__ = ["add_level", "fit_replay", "main", "prepare_replay", "replay_subset"]


# ---------------------------------------------------------------------------------------------
# growing a model by one level
# ---------------------------------------------------------------------------------------------


def _grown_config(config: TACEConfig) -> TACEConfig:
    m = config.num_levels + 1
    embeds = []
    for e in config.invariant_embeddings:
        if e.name == "level" and e.num_embeddings < m:
            e = dataclasses.replace(e, num_embeddings=m)
        embeds.append(e)
    return dataclasses.replace(
        config, num_levels=m, use_multi_head=True, invariant_embeddings=tuple(embeds)
    )


def _grown_statistics(stats: Statistics, source: int) -> Statistics:
    rows = lambda t: [list(r) for r in t] + [list(t[source])]  # noqa: E731
    span = None
    if stats.e0_span is not None:
        span = list(stats.e0_span) + [stats.e0_span[source]]
    return Statistics(
        rows(stats.atomic_energies),
        rows(stats.scale),
        rows(stats.shift),
        stats.avg_num_neighbors,
        span,
    )


def _fan_axis(path: tuple[str, ...], siblings: int) -> int | None:
    """The axis whose size sets a readout weight's forward-time ``α`` (None: no ``α``).

    ``TensorReadout`` linears (``linear_k/weight``): ``α = 1/√fan_in`` (axis 0).
    ``ScalarReadout`` ``weight_k``: ``1/√fan_out`` (axis 1) with hidden layers ("backward"),
    ``1/√fan_in`` (axis 0) without (``siblings``: its number of ``weight_k``).
    """
    leaf = path[-1]
    if len(path) >= 2 and path[-2].startswith("linear_") and leaf == "weight":
        return 0
    if leaf.startswith("weight_") and "readout" in "/".join(path):
        return 1 if siblings > 1 else 0
    return None


def _grow_leaf(x: np.ndarray, new_shape, heads_old: int, index: np.ndarray) -> np.ndarray:
    """Gather the level blocks of every axis whose size grew (layout ``[levels, block]``)."""
    for axis, (a, b) in enumerate(zip(x.shape, new_shape)):
        if a == b:
            continue
        block = a // heads_old
        if a % heads_old or b != block * len(index):
            raise ValueError(f"cannot grow axis {axis} of a {x.shape} parameter to {new_shape}")
        shape = x.shape[:axis] + (heads_old, block) + x.shape[axis + 1 :]
        x = np.take(x.reshape(shape), index, axis=axis)
        x = x.reshape(x.shape[:axis] + (b,) + x.shape[axis + 2 :])
    return x


def add_level(
    config: TACEConfig, statistics: Statistics, variables, source: int = 0
) -> tuple[TACEConfig, Statistics, dict]:
    """A model with one more fidelity level, an exact copy of level ``source``.

    Args:
        config, statistics, variables: the trained model (``M`` levels).
        source: the level that initialises the new level ``M``.

    Returns:
        ``(config, statistics, variables)`` with ``M + 1`` levels and multi-head readouts:
        every old level predicts as before, and level ``M`` predicts as level ``source``.

    Raises:
        ValueError: ``source`` is not a level of the model.
    """
    m_old = config.num_levels
    if not 0 <= source < m_old:
        raise ValueError(f"new_level_from = {source} is not a level of the model (0..{m_old - 1})")
    new_cfg = _grown_config(config)
    new_stats = _grown_statistics(statistics, source)
    graph = single_atom_graph(config.atomic_numbers[0], inputs=new_cfg.input_names)
    shapes = jax.eval_shape(TACE(new_cfg, new_stats).init, jax.random.key(0), graph)
    heads_old = m_old if config.use_multi_head else 1
    index = np.array([*range(m_old), source]) if heads_old > 1 else np.zeros(m_old + 1, int)
    old = traverse_util.flatten_dict(jax.device_get(dict(variables)))
    new = traverse_util.flatten_dict(dict(shapes))
    if set(old) != set(new):
        raise ValueError(f"parameter trees differ: {sorted(set(old) ^ set(new))[:4]}")
    out = {}
    for path, x in old.items():
        x, shape = np.asarray(x), tuple(new[path].shape)
        if path[-3:] == ("uie", "level", "table"):
            y = np.zeros(shape, x.dtype)
            y[: x.shape[0]] = x
            y[m_old] = x[source]
        elif x.shape != shape:
            y = _grow_leaf(x, shape, heads_old, index)
            siblings = sum(1 for p in old if p[:-1] == path[:-1] and p[-1].startswith("weight_"))
            axis = _fan_axis(path, siblings)
            if axis is not None and x.shape[axis] != shape[axis]:
                y = y * math.sqrt(shape[axis] / x.shape[axis])
        else:
            y = x
        out[path] = y.astype(x.dtype)
    return new_cfg, new_stats, traverse_util.unflatten_dict(out)


# ---------------------------------------------------------------------------------------------
# data and set-up
# ---------------------------------------------------------------------------------------------


def replay_subset(structures: Sequence, fraction: float, seed: int = 0) -> tuple[list, list]:
    """``(replayed, rest)``: a seeded random ``fraction`` of ``structures`` (at least one) in file
    order, and the others."""
    n = len(structures)
    k = min(n, max(1, int(round(fraction * n))))
    pick = np.zeros(n, bool)
    pick[np.random.default_rng(seed).choice(n, k, replace=False)] = True
    return [s for s, p in zip(structures, pick) if p], [
        s for s, p in zip(structures, pick) if not p
    ]


def _replay_data(cfg: TrainConfig, new_level: int) -> TrainingData:
    """New data at ``new_level`` (train/valid/test files) plus the replay subset (80/20 split
    like ``valid_fraction``), and up to 200 unreplayed old frames as test set ``replay_rest``."""
    from tace_jax.data import random_split

    entries = [
        {"file": cfg.train_file, "level": new_level}
        | ({"valid_file": cfg.valid_file} if cfg.valid_file else {})
        | ({"test_file": cfg.test_file} if cfg.test_file else {})
    ]
    base = cfg.replace(
        train_file=None,
        valid_file=None,
        test_file=None,
        train_files=[*entries, *cfg.train_files],
    )
    data = load_data(base)
    options = {k: v for k, v in read_options(cfg).items() if not k.endswith("_indices")}
    old = read_levelled(resolve_path(cfg.replay_file), cfg.new_level_from, **options)
    chosen, rest = replay_subset(old, cfg.replay_fraction, cfg.seed)
    tr, va = random_split(len(chosen), cfg.valid_fraction, cfg.seed)
    data.train.extend(chosen[i] for i in tr)
    data.valid.extend(chosen[i] for i in va)
    if rest:
        data.tests["replay_rest"] = rest[:200]
    return data


def _refit_new_e0(config, stats, variables, data, level: int, source: int, dtype) -> Statistics:
    """Add to level ``level``'s E0 the min-norm lstsq fit of the new energies minus the base
    model's level-``source`` predictions."""
    from tace_jax.data import structure_to_atoms
    from tace_jax.inference import Potential

    frames = [s for s in data.train if s.level == level and s.energy is not None]
    if not frames:
        raise ConfigError("config key 'new_level_e0': refit needs energies in train_file")
    pot = Potential(config, stats, variables, dtype=dtype)
    atoms = [structure_to_atoms(s) for s in frames]
    pred = [p["energy"] for p in pot.predict(atoms, ("energy",), batch_size=8, level=source)]
    zs = list(config.atomic_numbers)
    counts = np.array([[np.sum(s.numbers == z) for z in zs] for s in frames], float)
    resid = np.array([s.energy for s in frames]) - np.array(pred)
    e0 = np.array(stats.atomic_energies, float)
    e0[level] += np.linalg.lstsq(counts, resid, rcond=None)[0]
    return dataclasses.replace(stats, atomic_energies=[list(r) for r in e0])


def prepare_replay(cfg: TrainConfig):
    """``(setup, variables)`` of a replay run: the :class:`~tace_jax.train.setup.TrainingSetup`
    of the grown model and its starting variables (see the module docstring).

    Raises:
        ConfigError: a missing ``replay_model``/``replay_file``/``train_file`` or a model
            section that is not empty.
    """
    from tace_jax.inference import Potential

    from .setup import setup_training

    for key in ("replay_model", "replay_file", "train_file"):
        if not getattr(cfg, key):
            raise ConfigError(f"replay fine-tuning: config key {key!r} is required")
    if getattr(cfg, "finetune", None):
        raise ConfigError("replay fine-tuning: leave 'finetune' empty (replay_model is the base)")
    if cfg.model:
        raise ConfigError(
            "replay fine-tuning: leave the 'model' section empty (the model is replay_model's)"
        )
    path = resolve_path(cfg.replay_model)
    if not Path(path).exists():
        raise ConfigError(f"config key 'replay_model': {cfg.replay_model}: not found")
    base = Potential.load(path)
    try:
        model_cfg, stats, variables = add_level(
            base.config, base.statistics, base.variables, cfg.new_level_from
        )
    except ValueError as e:
        raise ConfigError(f"config key 'new_level_from': {e}") from None
    level = base.config.num_levels
    data = _replay_data(cfg, level)
    if cfg.new_level_e0 == "refit":
        stats = _refit_new_e0(
            model_cfg, stats, variables, data, level, cfg.new_level_from, cfg.dtype
        )
    setup = setup_training(cfg.replace(model=model_cfg.to_dict()), data)
    raw = {
        **stats.to_dict(),
        "atomic_numbers": list(model_cfg.atomic_numbers),
        "replay": {
            "replay_model": str(cfg.replay_model),
            "new_level": level,
            "new_level_from": cfg.new_level_from,
            "new_level_e0": cfg.new_level_e0,
            "replayed_train": sum(s.level != level for s in data.train),
            "new_train": sum(s.level == level for s in data.train),
        },
        "warnings": [],
    }
    setup = dataclasses.replace(
        setup,
        statistics=stats,
        raw_statistics=raw,
        model=setup.model.clone(statistics=stats),
    )
    return setup, variables


def fit_replay(
    config: TrainConfig | dict | str | Path,
    overrides: Sequence[str] = (),
    callbacks: Sequence[Callable] = (),
):
    """Multi-head replay fine-tuning (module docstring); returns the loop's
    :class:`~tace_jax.train.loop.FitResult` (the exported model has the new level)."""
    import time

    from .loop import Trainer
    from .state import create_train_state

    if isinstance(config, (str, Path)):
        cfg = load_config(config, overrides)
    elif isinstance(config, dict):
        cfg = config_from_dict(apply_overrides(config, overrides))
    else:
        cfg = config
    t0 = time.time()
    setup, variables = prepare_replay(cfg)
    trainer = Trainer(setup, callbacks, t0=t0)
    state = create_train_state(variables, setup.optimizer, cfg.dtype)
    trainer.state = jax.device_put(state, trainer.repl)  # resume may still overwrite it
    info = setup.raw_statistics["replay"]
    trainer.say(
        f"replay fine-tuning: level {info['new_level']} from level {info['new_level_from']} of "
        f"{info['replay_model']}; {info['new_train']} new + {info['replayed_train']} replayed "
        "training structures"
    )
    return trainer.run()


def main(argv=None) -> int:
    """``python -m tace_jax.train.replay CONFIG.yaml [key=value ...]``."""
    from tace_jax.data import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print("usage: python -m tace_jax.train.replay CONFIG.yaml [key=value ...]")
        return 2
    try:
        result = fit_replay(argv[0], argv[1:])
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"tace-jax replay: error: {e}", file=sys.stderr)
        return 2
    print(f"model: {result.model_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
