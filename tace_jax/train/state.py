"""The device-side training state (a pytree) and its construction."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from tace_jax.ops import cast_floats

__all__ = ["TrainState", "create_train_state"]


@flax.struct.dataclass
class TrainState:
    """Everything that changes on the device during training.

    Attributes:
        step: number of optimiser steps taken (int32 scalar).
        params: trainable parameters (``variables["params"]``).
        ema_params: exponential moving average of ``params`` (equal to ``params`` without EMA).
        opt_state: optax state of :func:`tace_jax.train.optimizer.make_optimizer`.
        lr_scale: reduce-on-plateau factor multiplying the scheduled learning rate.
        constants: the non-trainable variable collections of the model (may be empty).
    """

    step: Any
    params: Any
    ema_params: Any
    opt_state: Any
    lr_scale: Any
    constants: Any = flax.struct.field(default_factory=dict)

    def variables(self, ema: bool = False) -> dict:
        """Model variables (``{"params": ..., **constants}``) with raw or EMA parameters."""
        return {**self.constants, "params": self.ema_params if ema else self.params}


def create_train_state(
    variables: dict, optimizer: optax.GradientTransformation, dtype="float32"
) -> TrainState:
    """A fresh state from model variables (cast to ``dtype``) and an optimiser."""
    variables = cast_floats(variables, dtype, copy=True)  # fresh buffers: the state is donated
    params = variables["params"]
    constants = {k: v for k, v in variables.items() if k != "params"}
    return TrainState(
        step=jnp.asarray(0, jnp.int32),
        params=params,
        ema_params=jax.tree.map(jnp.copy, params),
        opt_state=optimizer.init(params),
        lr_scale=jnp.asarray(1.0, jnp.dtype(dtype)),
        constants=constants,
    )
