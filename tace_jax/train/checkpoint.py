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

#: Suffix of a checkpoint moved aside while the same step is saved again.
_PREVIOUS = ".previous"


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
        for backup in self.directory.glob(f"*{_PREVIOUS}"):  # a re-save that was killed
            final = self.directory / backup.name[: -len(_PREVIOUS)]
            if final.exists():
                shutil.rmtree(backup, ignore_errors=True)
            else:
                log.warning("restoring checkpoint %s from an interrupted re-save", final.name)
                backup.rename(final)
        solo = {}  # multi-host: only the calling process (process 0) saves, no barriers
        if jax.process_count() > 1:
            me = {jax.process_index()}
            solo = dict(multiprocessing_options=ocp.options.MultiprocessingOptions(min(me), me))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not solo, enable_async_checkpointing=False, **solo
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
        """Write a checkpoint for ``step`` (blocking).

        An existing checkpoint of the same step is moved aside first and deleted only once the
        new one is complete, so a save that dies half-way never loses it (the next
        :class:`Checkpointer` puts it back)."""
        step = int(step)
        final = self.directory / str(step)
        backup = self.directory / f"{step}{_PREVIOUS}"
        if step in self.manager.all_steps():
            shutil.rmtree(backup, ignore_errors=True)
            final.rename(backup)
            self.manager.reload()
        state = jax.tree.map(np.asarray, jax.device_get(state))
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
            self.manager.wait_until_finished()
        finally:
            if backup.exists():
                if final.exists():
                    shutil.rmtree(backup, ignore_errors=True)
                else:
                    backup.rename(final)
                self.manager.reload()

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
        """``(step, state, meta)`` of the newest readable checkpoint, or ``None`` if there is
        no checkpoint at all.

        Raises:
            RuntimeError: checkpoints exist but none can be read (training must not silently
                start over and then overwrite them).
        """
        errors = []
        for step in reversed(self.all_steps()):
            try:
                state, meta = self.restore(step, abstract_state)
            except Exception as e:  # unreadable: fall back to an older one
                log.warning("cannot restore checkpoint %d (%s); trying an older one", step, e)
                errors.append(f"step {step}: {type(e).__name__}: {str(e)[:200]}")
                continue
            return step, state, meta
        if errors:
            raise RuntimeError(
                f"{self.directory}: cannot restore any checkpoint ({'; '.join(errors)}); move "
                "the directory away (or set resume: false) to start over"
            )
        return None

    def close(self) -> None:
        self.manager.close()
