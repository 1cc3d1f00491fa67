"""Atomic training checkpoints with ``orbax.checkpoint.CheckpointManager``.

A checkpoint (``<output_dir>/checkpoints/<step>/``) has two items:

* ``state``: the :class:`~tace_jax.train.state.TrainState` pytree (params, EMA params, optimiser
  state, step, plateau factor);
* ``meta``: JSON with everything on the host: epoch, step in epoch, loader state, scheduler
  state, best metric, early-stopping counter, partial-epoch metric sums, config.

Orbax writes into a temporary directory and renames it when complete, so a step directory that
exists is complete; temporary directories of interrupted saves are never listed (and are
removed at start-up). :meth:`Checkpointer.restore_latest` additionally falls back to older
checkpoints if the newest cannot be read.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["Checkpointer"]

log = logging.getLogger(__name__)


def _tmp_dirs(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.is_dir() and ".orbax-checkpoint-tmp" in p.name]


class Checkpointer:
    """Save / restore train state + host metadata in ``directory``, keeping the last ``keep``.

    Args:
        directory: checkpoint root (created if missing).
        keep: number of checkpoints kept.
    """

    def __init__(self, directory: str | Path, keep: int = 3):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        for tmp in _tmp_dirs(self.directory):  # leftovers of an interrupted save
            log.warning("removing incomplete checkpoint %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending."""
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        """Write a checkpoint for ``step`` (blocking; replaces an existing one of that step)."""
        step = int(step)
        if step in self.manager.all_steps():
            self.manager.delete(step)
        state = jax.tree.map(np.asarray, jax.device_get(state))
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self.manager.wait_until_finished()

    def restore(self, step: int, abstract_state):
        """``(state, meta)`` of ``step``; ``abstract_state`` gives the tree structure/dtypes."""
        target = jax.tree.map(np.asarray, jax.device_get(abstract_state))
        out = self.manager.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        return out["state"], dict(out["meta"])

    def restore_latest(self, abstract_state):
        """``(step, state, meta)`` of the newest readable checkpoint, or ``None`` if none."""
        for step in reversed(self.all_steps()):
            try:
                state, meta = self.restore(step, abstract_state)
            except Exception as e:  # unreadable: fall back to an older one
                log.warning("cannot restore checkpoint %d (%s); trying an older one", step, e)
                continue
            return step, state, meta
        return None

    def close(self) -> None:
        self.manager.close()
