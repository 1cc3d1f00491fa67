"""The set-up of a training run: data, statistics, model and optimiser (nothing compiled).

:func:`setup_training` turns a :class:`~tace_jax.train.config.TrainConfig` into a
:class:`TrainingSetup`; the loop (:mod:`tace_jax.train.loop`) initialises the parameters,
compiles the steps (with its cache) and trains. The set-up writes no files and changes no
global state.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from tace_jax.data import GraphLoader, NeighborCache
from tace_jax.inference.potential import as_compute_dtype
from tace_jax.models import TACE, Statistics, TACEConfig

from . import distributed, finetune
from .config import ConfigError, TrainConfig
from .loss import LossConfig
from .optimizer import make_optimizer, make_schedule
from .prepare import (
    TrainingData,
    build_loss_config,
    build_model_config,
    build_statistics,
    load_data,
    make_loaders,
)
from .step import make_mesh

__all__ = ["TrainingSetup", "check_dtype", "setup_training"]


def check_dtype(dtype: str) -> None:
    """Raise :class:`ConfigError` when ``dtype`` is float64 and 64-bit JAX is off.

    The package never switches 64-bit JAX on itself: the user does, at program start
    (``jax.config.update("jax_enable_x64", True)`` at program start, or the environment
    variable, e.g. ``JAX_ENABLE_X64=1 tace-jax train ...``).
    """
    try:
        as_compute_dtype(dtype)
    except RuntimeError:
        raise ConfigError(
            f"config key 'dtype': {dtype} needs 64-bit JAX, which is off: call "
            "jax.config.update('jax_enable_x64', True) at program start, or run "
            "'JAX_ENABLE_X64=1 tace-jax train ...'"
        ) from None


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
    """What a training run is built from (see :func:`setup_training`).

    Attributes:
        cfg: the training config.
        data: the train / valid / test structures.
        model_cfg: the model config (``atomic_numbers`` resolved from the data).
        statistics: the model's dataset constants (E0, σ, μ, n̄).
        raw_statistics: the plain dict of :func:`tace_jax.data.compute_statistics`.
        mesh: the data-parallel device mesh.
        train_loader: per-device batches of the training set (shuffled).
        valid_loader: the validation set, or None.
        test_loaders: ``{name: loader}`` of the test sets.
        loss_cfg: the loss terms with labels in the training data.
        model: the (unparametrised) TACE module.
        optimizer: the optax optimiser.
        schedule: the learning-rate schedule.
        steps_per_epoch: optimiser steps of one epoch (all devices together).
        total_steps: ``max_steps`` or ``max_epochs × steps_per_epoch`` (cosine horizon).
    """

    cfg: TrainConfig
    data: TrainingData
    model_cfg: TACEConfig
    statistics: Statistics
    raw_statistics: dict
    mesh: Mesh
    train_loader: GraphLoader
    valid_loader: GraphLoader | None
    test_loaders: dict[str, GraphLoader]
    loss_cfg: LossConfig
    model: TACE
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    steps_per_epoch: int
    total_steps: int

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    def example_batch(self):
        """The first training batch (device arrays), e.g. to initialise the parameters."""
        first = self.train_loader.make_batch(self.train_loader.plan(0)[0])
        return jax.tree.map(jnp.asarray, first)


def setup_training(cfg: TrainConfig, data: TrainingData | None = None) -> TrainingSetup:
    """Load the data and build the statistics, model, loaders, loss and optimiser of ``cfg``.

    Args:
        cfg: the training config.
        data: pre-loaded structures (otherwise read from the config's files).

    Raises:
        ConfigError: a bad option, e.g. ``dtype: float64`` without 64-bit JAX.
        DataError: unreadable or invalid data.
    """
    check_dtype(cfg.dtype)
    if cfg.replay_model and data is None:  # train/replay.py builds the data and the model
        raise ConfigError("config key 'replay_model': run 'python -m tace_jax.train.replay'")
    data = data if data is not None else load_data(cfg)
    base = finetune.load_base(cfg.finetune) if cfg.finetune else None  # fine-tuning base
    model_cfg = build_model_config(cfg, data) if base is None else base.config
    mesh = make_mesh(cfg.num_devices)
    cache = NeighborCache(model_cfg.cutoff)
    if base is None:
        statistics, raw_stats = build_statistics(cfg, model_cfg, data, cache)
    else:
        finetune.check_model_section(cfg.model, base.config)
        statistics, raw_stats = finetune.finetune_statistics(cfg, base, data, cache)
    shard = distributed.shard_training_data(data)  # multi-host: this process's train frames
    train, valid, tests = make_loaders(cfg, model_cfg, shard, mesh.size, cache)
    distributed.agree_budgets(train)  # same padded shapes on every process
    loss_cfg = build_loss_config(cfg, train.properties)
    model = TACE(model_cfg, statistics, param_dtype=jnp.dtype(cfg.dtype))
    if model_cfg.les:  # static k-grid for every batch (docs/theory.md §4)
        from tace_jax.models.les import dataset_les_static

        everything = [*data.train, *data.valid, *(s for t in data.tests.values() for s in t)]
        model = model.clone(**dataset_les_static(everything, model_cfg.les_dl))
    optimizer = make_optimizer(cfg.lr, cfg.weight_decay, cfg.amsgrad, cfg.clip, dtype=cfg.dtype)
    if base is not None:  # the base variables, frozen labels / LoRA adapters
        model, optimizer, raw_stats["finetune"] = finetune.prepare_finetune(cfg, base, model)
    steps_per_epoch = distributed.steps_per_epoch(train, mesh)  # max over processes
    total = cfg.max_steps or cfg.max_epochs * steps_per_epoch
    return TrainingSetup(
        cfg=cfg,
        data=data,
        model_cfg=model_cfg,
        statistics=statistics,
        raw_statistics=raw_stats,
        mesh=mesh,
        train_loader=train,
        valid_loader=valid,
        test_loaders=tests,
        loss_cfg=loss_cfg,
        model=model,
        optimizer=optimizer,
        schedule=make_schedule(cfg.scheduler, cfg.lr, total, cfg.warmup_steps, cfg.min_lr),
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
    )
