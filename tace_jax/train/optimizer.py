"""Optimiser and learning-rate schedules (``docs/theory.md`` §5.2).

The optimiser is AdamW (optionally AMSGrad) behind global-norm gradient clipping, built as an
``optax.inject_hyperparams`` transformation so that the learning rate is a value in the
optimiser state: the train step writes ``lr = schedule(step) · lr_scale`` into it before each
update. ``schedule`` is constant, or linear warm-up + cosine decay, with optional warm-up for
both; ``lr_scale`` is the host-side reduce-on-plateau factor (:class:`PlateauScheduler`), which
lives in the train state and in checkpoints.

Fine-tuning (:mod:`tace_jax.train.finetune`) passes ``labels``: a pytree like the parameters
with ``"trainable"`` / ``"frozen"`` leaves. The optimiser is then an ``optax.multi_transform``
(inside ``inject_hyperparams``, so the learning rate stays at the top of the state): AdamW on
the trainable leaves and ``optax.set_to_zero()`` on the frozen ones, whose state is empty, so
frozen parameters get no moments and exactly zero updates. Clipping and weight decay act on the
trainable leaves only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "FROZEN",
    "TRAINABLE",
    "PlateauScheduler",
    "make_optimizer",
    "make_schedule",
    "set_learning_rate",
]

#: Parameter labels of a fine-tuning optimiser.
TRAINABLE, FROZEN = "trainable", "frozen"


def _adamw(learning_rate, weight_decay, amsgrad, clip):
    parts = []
    if clip:
        parts.append(optax.clip_by_global_norm(clip))
    parts.append(optax.scale_by_amsgrad() if amsgrad else optax.scale_by_adam())
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)


def _partitioned(labels):
    """``_adamw`` on the ``TRAINABLE`` leaves, ``set_to_zero`` (no state) on ``FROZEN`` ones."""

    def build(learning_rate, weight_decay, amsgrad, clip):
        adamw = _adamw(learning_rate, weight_decay, amsgrad, clip)
        return optax.multi_transform({TRAINABLE: adamw, FROZEN: optax.set_to_zero()}, labels)

    return build


def make_optimizer(
    lr: float,
    weight_decay: float = 1e-8,
    amsgrad: bool = False,
    clip: float | None = 1.0,
    dtype="float32",
    labels=None,
) -> optax.GradientTransformation:
    """AdamW with global-norm clipping; the learning rate is an injected hyperparameter.

    Weight decay is decoupled and multiplied by the learning rate (PyTorch ``AdamW``).
    ``dtype`` is the dtype of the injected learning rate (that of the parameters).
    ``labels`` (a pytree like the parameters, leaves ``"trainable"``/``"frozen"``, or a
    function of the parameters returning one) freezes parameters: see the module docstring.
    """
    if labels is not None:
        bad = {x for x in jax.tree.leaves(labels) if x not in (TRAINABLE, FROZEN)}
        if not callable(labels) and bad:
            raise ValueError(f"optimizer labels must be {TRAINABLE!r} or {FROZEN!r}, got {bad}")
    fn = _adamw if labels is None else _partitioned(labels)
    return optax.inject_hyperparams(
        fn, static_args=("weight_decay", "amsgrad", "clip"), hyperparam_dtype=jnp.dtype(dtype)
    )(learning_rate=lr, weight_decay=weight_decay, amsgrad=amsgrad, clip=clip)


def set_learning_rate(opt_state, lr):
    """A copy of an :func:`make_optimizer` state with the learning rate replaced."""
    hp = dict(opt_state.hyperparams)
    hp["learning_rate"] = jnp.asarray(lr, dtype=jnp.asarray(hp["learning_rate"]).dtype)
    return opt_state._replace(hyperparams=hp)


def make_schedule(
    kind: str, lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0
):
    """``step → base learning rate`` (jit-able).

    Args:
        kind: ``"constant"`` / ``"plateau"`` (constant base, the plateau factor is applied
            separately) or ``"cosine"`` (decay from ``lr`` to ``min_lr`` over ``total_steps``).
        lr: peak learning rate.
        total_steps: schedule length (cosine only).
        warmup_steps: linear warm-up from ``lr/10`` … ``lr``; 0 disables.
        min_lr: floor of the cosine.
    """
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=lr / 10 if warmup_steps else lr,
            peak_value=lr,
            warmup_steps=warmup_steps,
            decay_steps=max(total_steps, warmup_steps + 1),
            end_value=min(min_lr, lr),
        )
    if kind not in ("constant", "plateau"):
        raise ValueError(f"unknown scheduler {kind!r}; use plateau, cosine or constant")
    if warmup_steps:
        return optax.join_schedules(
            [optax.linear_schedule(lr / 10, lr, warmup_steps), optax.constant_schedule(lr)],
            [warmup_steps],
        )
    return optax.constant_schedule(lr)


@dataclasses.dataclass
class PlateauScheduler:
    """Reduce-on-plateau (PyTorch ``ReduceLROnPlateau``, mode ``min``, relative threshold 1e-4).

    After each validation, call :meth:`step` with the monitored loss; when it has not improved
    on the best value for more than ``patience`` evaluations, ``scale`` is multiplied by
    ``factor`` (but ``lr·scale`` never falls below ``min_lr``). Host-side; its state is a plain
    dict (:meth:`state_dict`) saved in checkpoints.
    """

    lr: float
    factor: float = 0.5
    patience: int = 15
    min_lr: float = 1e-6
    threshold: float = 1e-4
    enabled: bool = True
    scale: float = 1.0
    best: float = float("inf")
    num_bad: int = 0

    def step(self, metric: float) -> bool:
        """Update with a validation metric; returns True if the learning rate was reduced."""
        if not self.enabled:
            return False
        if metric < self.best * (1.0 - self.threshold):
            self.best, self.num_bad = float(metric), 0
            return False
        self.num_bad += 1
        if self.num_bad > self.patience:
            new = max(self.scale * self.factor, self.min_lr / self.lr)
            self.num_bad = 0
            if new < self.scale:
                self.scale = new
                return True
        return False

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "num_bad": self.num_bad}

    def load_state_dict(self, d: dict) -> None:
        self.scale, self.best, self.num_bad = float(d["scale"]), float(d["best"]), int(d["num_bad"])
