"""Evaluation helpers of the training loop: compiled-function cache, loader evaluation and
epoch metrics from the train-step statistics."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import numpy as np

from .loss import LossConfig, combine_loss, terms_with_labels
from .metrics import ErrorAccumulator
from .step import group_batches, make_eval_step, shard_batch

__all__ = [
    "cached",
    "epoch_train_metrics",
    "eval_loss_config",
    "evaluate_loader",
]

# Jitted functions are reused by later Trainers with identical settings (same model config,
# statistics, loss, optimiser, schedule and devices), so that e.g. a resumed or repeated run in
# the same process does not compile again.
_COMPILED: dict = {}


def cached(key, build: Callable):
    """``build()`` once per hashable ``key`` (a small process-wide cache)."""
    if key not in _COMPILED:
        if len(_COMPILED) > 16:
            _COMPILED.clear()
        _COMPILED[key] = build()
    return _COMPILED[key]


def eval_loss_config(train_loss: LossConfig, available: Sequence[str]) -> LossConfig:
    """The training loss restricted to the labels present in an evaluation set."""
    with_labels = terms_with_labels(available)
    weights = {k: w for k, w in train_loss.active.items() if k in with_labels}
    return LossConfig(
        weights=weights or {"energy": 1.0},
        loss_type=train_loss.loss_type,
        huber_delta=train_loss.huber_delta,
        hessian_samples=train_loss.hessian_samples,
    )


def eval_properties(
    available: Sequence[str], train_loss: LossConfig | None = None
) -> tuple[str, ...]:
    """Properties to predict for an evaluation set with labels ``available``: energy, the
    labelled ones of forces/stress/virials and the trained response terms with labels."""
    base = tuple(
        p for p in ("energy", "forces", "stress", "virials") if p == "energy" or p in available
    )
    if train_loss is None:
        return base
    with_labels = terms_with_labels(available)
    extra = tuple(
        t for t in train_loss.active if t in with_labels and t not in base and t != "hessian"
    )
    return base + extra


def evaluate_loader(
    apply_fn, variables, loader, mesh, train_loss: LossConfig, cache_key=None
) -> dict:
    """Errors (:func:`~tace_jax.train.metrics.error_metrics`) and ``loss`` of ``variables`` on
    every structure of ``loader``, run SPMD on ``mesh``."""
    props = eval_properties(loader.properties, train_loss)
    loss_cfg = eval_loss_config(train_loss, loader.properties)
    step_fn = cached(
        ("eval", cache_key, props, loss_cfg),
        lambda: make_eval_step(apply_fn, loss_cfg, mesh, props),
    )
    acc, total = ErrorAccumulator(), None
    for stacked, n_real in group_batches(loader.epoch_batches(0), mesh.size):
        pred, sums = step_fn(variables, shard_batch(stacked, mesh))
        acc.add_stacked(jax.device_get(pred), stacked, n_real)
        sums = jax.device_get(sums)
        total = sums if total is None else {k: total[k] + sums[k] for k in total}
    metrics = acc.compute()
    if "hessian" in loss_cfg.active:  # sampled rows: errors from the sums
        n = max(float(total["n_hessian"]), 1.0)
        metrics["hessian_mae"] = float(total["sae_hessian"]) / n
        metrics["hessian_rmse"] = math.sqrt(float(total["sse_hessian"]) / n)
    metrics["loss"] = float(combine_loss(total, loss_cfg))
    return metrics


def epoch_train_metrics(step_metrics: list[dict]) -> dict:
    """``train_loss`` (mean over steps) and ``train_<q>_mae/rmse`` from the per-step sums."""
    if not step_metrics:
        return {}
    tot = {k: float(np.sum([m[k] for m in step_metrics])) for k in step_metrics[0]}
    out = {"train_loss": tot["loss"] / len(step_metrics)}
    for k in tot:
        if k.startswith("sae_"):
            q, n = k[4:], max(tot[f"n_{k[4:]}"], 1.0)
            out[f"train_{q}_mae"] = tot[k] / n
            out[f"train_{q}_rmse"] = math.sqrt(tot[f"sse_{q}"] / n)
    return out
