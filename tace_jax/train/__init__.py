"""Training: losses, optimiser and schedules, EMA, SPMD steps, checkpoints, metrics, ``fit``.

Typical use::

    from tace_jax.train import fit, load_config
    result = fit(load_config("train.yaml", ["max_time=600"]))
    print(result.test_metrics)

``fit`` = :func:`~tace_jax.train.setup.setup_training` (data, statistics, model, optimiser)
followed by the loop :class:`~tace_jax.train.loop.Trainer`.

See :mod:`tace_jax.train.config` for the options (``tace-jax train --schema`` prints them) and
:mod:`tace_jax.train.step` for data parallelism and multi-host start-up.
"""

from .checkpoint import Checkpointer as Checkpointer
from .config import ConfigError as ConfigError
from .config import TrainConfig as TrainConfig
from .config import apply_overrides as apply_overrides
from .config import config_from_dict as config_from_dict
from .config import load_config as load_config
from .config import train_config_schema as train_config_schema
from .ema import ema_decay as ema_decay
from .ema import ema_update as ema_update
from .loop import FitResult as FitResult
from .loop import Trainer as Trainer
from .loop import fit as fit
from .loss import LossConfig as LossConfig
from .loss import combine_loss as combine_loss
from .loss import loss_sums as loss_sums
from .metrics import ErrorAccumulator as ErrorAccumulator
from .metrics import error_metrics as error_metrics
from .metrics import format_metrics as format_metrics
from .optimizer import PlateauScheduler as PlateauScheduler
from .optimizer import make_optimizer as make_optimizer
from .optimizer import make_schedule as make_schedule
from .setup import TrainingSetup as TrainingSetup
from .setup import setup_training as setup_training
from .state import TrainState as TrainState
from .state import create_train_state as create_train_state
from .step import make_eval_step as make_eval_step
from .step import make_mesh as make_mesh
from .step import make_train_step as make_train_step
from .step import shard_batch as shard_batch
from .step import stack_batches as stack_batches

__all__ = [
    "Checkpointer",
    "ConfigError",
    "FitResult",
    "LossConfig",
    "PlateauScheduler",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "TrainingSetup",
    "apply_overrides",
    "combine_loss",
    "config_from_dict",
    "create_train_state",
    "ema_decay",
    "ema_update",
    "error_metrics",
    "ErrorAccumulator",
    "fit",
    "format_metrics",
    "load_config",
    "loss_sums",
    "make_eval_step",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "setup_training",
    "shard_batch",
    "stack_batches",
    "train_config_schema",
]
