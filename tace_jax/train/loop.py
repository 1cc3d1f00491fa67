"""``fit()``: the training loop (set-up → parameters → SPMD steps → eval → export).

:func:`~tace_jax.train.setup.setup_training` builds the data, statistics, model and optimiser;
:class:`Trainer` initialises the parameters, compiles the steps (reusing the process-wide
compile cache of :mod:`tace_jax.train.evaluation`), trains, evaluates and exports.

Output directory layout::

    <output_dir>/config.yaml        resolved config (model section complete)
    <output_dir>/statistics.json    dataset statistics (E0, σ, μ, n̄, ...)
    <output_dir>/metrics.jsonl/.csv one row per evaluation (train + valid metrics, lr, time)
    <output_dir>/train.log          the printed log
    <output_dir>/checkpoints/<step> orbax checkpoints (last ``keep_checkpoints``)
    <output_dir>/model              best EMA model (Potential.save; load with Potential.load)
    <output_dir>/test_metrics.json  test errors of the exported model

Resuming (``resume: true``, the default) continues from the newest complete checkpoint exactly
where it stopped, mid-epoch included: the parameters, optimiser and EMA state, the plateau
scheduler, early-stopping counters and the position in the (deterministic) batch order are
all restored, so an interrupted and resumed run ends with the same parameters as an
uninterrupted one. ``max_time`` bounds the training time of one invocation (set-up included).

Multi-host (:mod:`tace_jax.train.distributed`, docs/multihost.md): each process trains on its
shard of the frames; only process 0 writes ``output_dir`` and reads it back on resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tace_jax.inference import Potential

from . import distributed
from .checkpoint import Checkpointer
from .config import TrainConfig, apply_overrides, config_from_dict, load_config
from .evaluation import cached, epoch_train_metrics, evaluate_loader
from .logger import MetricsLogger
from .metrics import format_metrics
from .optimizer import PlateauScheduler
from .prefetch import device_prefetch
from .prepare import TrainingData, write_run_files
from .setup import TrainingSetup, setup_training
from .state import TrainState, create_train_state
from .step import make_train_step

__all__ = ["FitResult", "Trainer", "fit"]

_SUM_PREFIXES = ("loss_", "count_", "sae_", "sse_", "n_")


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns."""

    output_dir: Path
    model_path: Path
    potential: object
    state: TrainState
    history: list
    valid_metrics: dict
    test_metrics: dict
    stop_reason: str
    steps: int
    epochs: int
    elapsed: float


class Trainer:
    """The training loop behind :func:`fit` (exposed for scripting and tests).

    Args:
        setup: what :func:`~tace_jax.train.setup.setup_training` built.
        callbacks: ``cb(event, info)`` called with ``event="step"`` after every step
            (``info``: step, epoch, step_in_epoch, state, metrics) and ``"eval"`` after every
            evaluation (``info``: epoch, step, row). Raising inside a callback aborts training
            (used by tests to simulate a crash).
        t0: start time of the run (``time.time()``; default now), for ``max_time``.
    """

    def __init__(
        self, setup: TrainingSetup, callbacks: Sequence[Callable] = (), t0: float | None = None
    ):
        self.main, self.n_train = distributed.is_main_process(), len(setup.data.train)
        if distributed.process_count() > 1:  # keep only this process's training frames
            setup = dataclasses.replace(setup, data=distributed.shard_training_data(setup.data))
        self.setup, self.cfg, self.callbacks = setup, setup.cfg, list(callbacks)
        self.t0 = time.time() if t0 is None else t0
        cfg = setup.cfg
        self.out, self._log_file = Path(cfg.output_dir), None
        if self.main:  # multi-host: the other processes never touch output_dir
            self.out.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.out / "train.log", "a")  # noqa: SIM115
            write_run_files(self.out, cfg, setup.model_cfg, setup.raw_statistics)
        # compiled functions are shared by Trainers with the same key (evaluation.cached)
        self.compile_key = (
            setup.model_cfg,
            setup.statistics,
            cfg.dtype,
            tuple(d.id for d in setup.mesh.devices.flat),
            getattr(setup.model, "cache_tag", None),  # fine-tuning (train/finetune.py)
        )
        init = cached(("init", *self.compile_key), lambda: jax.jit(setup.model.init))
        variables = init(jax.random.key(cfg.seed), setup.example_batch())
        self.repl = NamedSharding(setup.mesh, P())
        state = create_train_state(variables, setup.optimizer, cfg.dtype)
        self.state = jax.device_put(distributed.broadcast_tree(state), self.repl)
        self.train_step = cached(self._train_step_key(), self._make_train_step)
        self.plateau = PlateauScheduler(
            cfg.lr,
            cfg.plateau_factor,
            cfg.plateau_patience,
            cfg.min_lr,
            enabled=cfg.scheduler == "plateau",
        )
        if not cfg.resume and self.main:
            self._start_fresh()
        ckpt_dir = self.out / "checkpoints"
        self.ckpt = Checkpointer(ckpt_dir, keep=cfg.keep_checkpoints) if self.main else None
        self.logger = MetricsLogger(self.out) if self.main else None
        self.model_path = self.out / "model"
        self.epoch = self.step_in_epoch = self.bad_evals = 0
        self.best, self.best_epoch, self.stopped = float("inf"), -1, None
        self.epoch_metrics: list[dict] = []
        self.history: list[dict] = []
        self.valid_metrics: dict = {}
        self.n_params = sum(int(np.size(x)) for x in jax.tree.leaves(variables["params"]))

    def _train_step_key(self) -> tuple:
        cfg = self.cfg
        return (
            "train",
            *self.compile_key,
            self.setup.loss_cfg,
            cfg.lr,
            cfg.weight_decay,
            cfg.amsgrad,
            cfg.clip,
            cfg.scheduler,
            self.setup.total_steps if cfg.scheduler == "cosine" else None,
            cfg.warmup_steps,
            cfg.min_lr,
            cfg.ema_decay,
        )

    def _make_train_step(self):
        s = self.setup
        return make_train_step(
            s.model.apply,
            s.optimizer,
            s.loss_cfg,
            s.schedule,
            s.mesh,
            properties=tuple(s.loss_cfg.active),
            ema_decay=self.cfg.ema_decay,
        )

    # ------------------------------------------------------------------ bookkeeping
    def _start_fresh(self) -> None:
        """``resume: false``: discard checkpoints, logs and model of an earlier run here."""
        import shutil

        old = [
            p
            for p in (
                self.out / "checkpoints",
                self.out / "metrics.jsonl",
                self.out / "metrics.csv",
                self.out / "model",
                self.out / "test_metrics.json",
            )
            if p.exists()
        ]
        if old:
            self.say(f"resume=false: removing the previous run's {[p.name for p in old]}")
        for p in old:
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    def say(self, msg: str) -> None:
        if not self.main:
            return
        print(msg, flush=True)
        self._log_file.write(msg + "\n")
        self._log_file.flush()

    @property
    def global_step(self) -> int:
        return int(jax.device_get(self.state.step))

    def _meta(self) -> dict:
        self.setup.train_loader.set_epoch(self.epoch, self.step_in_epoch)
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "loader": self.setup.train_loader.state_dict(),
            "plateau": self.plateau.state_dict(),
            "best_loss": self.best,
            "best_epoch": self.best_epoch,
            "bad_evals": self.bad_evals,
            "stopped": self.stopped,
            "history_rows": len(self.history),
            "epoch_metrics": [
                {k: float(v) for k, v in m.items()} for m in jax.device_get(self.epoch_metrics)
            ],
            "num_devices": self.setup.num_devices,
            "config": self.cfg.to_dict(),
        }

    def save_checkpoint(self) -> None:
        if self.main:
            self.ckpt.save(self.global_step, self.state, self._meta())

    def restore(self) -> bool:
        """Load the newest checkpoint if there is one; returns True if it did."""
        found = self.ckpt.restore_latest(self.state) if self.main else None
        rows = None
        if found is not None and self.logger.jsonl.exists():
            from .logger import read_jsonl

            rows = read_jsonl(self.logger.jsonl)[: int(found[2].get("history_rows", 0))]
        if distributed.process_count() > 1:  # process 0 read it; the others receive it
            head = None if found is None else {"step": found[0], "meta": found[2], "rows": rows}
            head = distributed.broadcast_json(head)
            if head is None:
                return False
            state = distributed.broadcast_tree(found[1] if self.main else self.state)
            found, rows = (head["step"], state, head["meta"]), head["rows"]
        if found is None:
            return False
        step, state, meta = found
        self.state = jax.device_put(state, self.repl)
        self.epoch, self.step_in_epoch = int(meta["epoch"]), int(meta["step_in_epoch"])
        self.setup.train_loader.load_state_dict(meta["loader"])
        self.plateau.load_state_dict(meta["plateau"])
        self.best, self.best_epoch = float(meta["best_loss"]), int(meta["best_epoch"])
        self.bad_evals, self.stopped = int(meta["bad_evals"]), meta.get("stopped")
        self.epoch_metrics = [dict(m) for m in meta.get("epoch_metrics", [])]
        if meta.get("num_devices", self.setup.num_devices) != self.setup.num_devices:
            self.say(
                f"warning: checkpoint written with {meta['num_devices']} devices, resuming "
                f"with {self.setup.num_devices}; the batch grouping differs"
            )
        if rows is not None:
            self.history = rows
            if self.main:
                self.logger.truncate_after(rows[-1]["step"] if rows else -1)
        self.say(
            f"resumed from checkpoint step {step} (epoch {self.epoch}, batch {self.step_in_epoch})"
        )
        return True

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, loader, variables) -> dict:
        """Errors and loss of ``variables`` on every structure of ``loader`` (eV, Å)."""
        return evaluate_loader(
            self.setup.model.apply,
            variables,
            loader,
            self.setup.mesh,
            self.setup.loss_cfg,
            self.compile_key,
        )

    def export(self, variables, path: Path | None = None) -> Path:
        """Save ``variables`` (EMA) as a :class:`~tace_jax.inference.Potential` file."""
        path = Path(path or self.model_path)
        if not self.main:  # multi-host: only process 0 writes
            return path
        export = getattr(self.setup.model, "export_variables", lambda v, _: v)  # LoRA merge
        pot = Potential(
            self.setup.model_cfg,
            self.setup.statistics,
            jax.device_get(export(variables, path)),
            dtype=self.cfg.dtype,
        )
        pot.save(path)
        return path

    def _end_of_evaluation(self, tag: str, adjust: bool) -> dict:
        """Validate the EMA model, log a row, track the best model, step the plateau."""
        variables = self.state.variables(ema=True)
        row = {
            "epoch": self.epoch,
            "step": self.global_step,
            "time": round(time.time() - self.t0, 2),
            "lr": float(jax.device_get(self.setup.schedule(self.state.step) * self.state.lr_scale)),
        }
        row.update(epoch_train_metrics(jax.device_get(self.epoch_metrics)))
        if self.setup.valid_loader is not None:
            vm = self.evaluate(self.setup.valid_loader, variables)
            self.valid_metrics = vm
            row.update({f"valid_{k}": v for k, v in vm.items()})
            monitor = vm["loss"]
        else:
            monitor = row.get("train_loss", float("inf"))
        improved = monitor < self.best
        if improved:
            self.best, self.best_epoch = float(monitor), self.epoch
            self.export(variables)
        if adjust:  # early-stopping counter (not touched by the final evaluation)
            self.bad_evals = 0 if improved else self.bad_evals + 1
        if adjust and self.plateau.step(monitor):
            self.state = self.state.replace(
                lr_scale=jax.device_put(jnp.asarray(self.plateau.scale, self.cfg.dtype), self.repl)
            )
            self.say(f"  reducing learning rate to {self.cfg.lr * self.plateau.scale:.3g}")
        row["best_loss"], row["event"] = self.best, tag
        if self.main:
            self.logger.log(row)
        self.history.append(row)
        msg = f"epoch {self.epoch:4d} step {row['step']:6d} lr {row['lr']:.2e} "
        msg += f"loss {row.get('train_loss', float('nan')):.4g}"
        if self.setup.valid_loader is not None:
            msg += f" | valid loss {vm['loss']:.4g} " + format_metrics(vm)
        self.say(msg + (" *" if improved else ""))
        for cb in self.callbacks:
            cb("eval", {"epoch": self.epoch, "step": row["step"], "row": row})
        return row

    # ------------------------------------------------------------------ training
    def _out_of_time(self) -> bool:
        return self.cfg.max_time is not None and time.time() - self.t0 > self.cfg.max_time

    def _train_epoch(self) -> str | None:
        """Train the rest of the current epoch; returns a stop reason or None."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        loader, mesh = self.setup.train_loader, self.setup.mesh
        n_local = distributed.local_mesh_devices(mesh)  # all of them with one process
        n_steps = distributed.steps_per_epoch(loader, mesh, self.epoch)  # agreed by all
        done = math.ceil(self.step_in_epoch / n_local)
        bar = tqdm(
            total=n_steps,
            initial=done,
            disable=not (cfg.progress and self.main),
            desc=f"epoch {self.epoch}",
            leave=False,
            dynamic_ncols=True,
        )
        groups = distributed.padded_groups(
            loader, self.epoch, self.step_in_epoch, n_local, n_steps - done
        )
        place = lambda stacked: distributed.global_batch(stacked, mesh)  # local -> global
        groups = device_prefetch(groups, place, cfg.device_prefetch)
        try:
            for k, (batch, n_real) in enumerate(groups):
                self.state, m = self.train_step(self.state, batch)
                self.step_in_epoch += n_real
                self.epoch_metrics.append(
                    {k2: v for k2, v in m.items() if k2 == "loss" or k2.startswith(_SUM_PREFIXES)}
                )
                bar.update(1)
                if cfg.progress and k % 20 == 0:
                    bar.set_postfix(loss=f"{float(m['loss']):.4g}")
                step = self.global_step
                info = {"step": step, "epoch": self.epoch, "metrics": m, "state": self.state}
                info["step_in_epoch"] = self.step_in_epoch
                for cb in self.callbacks:
                    cb("step", dict(info))
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if cfg.max_steps is not None and step >= cfg.max_steps:
                    return "max_steps"
                if self._out_of_time():
                    return "max_time"
        finally:
            groups.close()
            bar.close()
        return None

    def run(self) -> FitResult:
        cfg = self.cfg
        if cfg.resume:
            self.restore()
        self.say(
            f"tace-jax training: {self.n_train} train / {len(self.setup.data.valid)} "
            f"valid structures, {self.n_params} parameters, {self.setup.num_devices} device(s)"
            f" in {distributed.process_count()} process(es), "
            f"{self.setup.steps_per_epoch} steps/epoch, loss {dict(self.setup.loss_cfg.active)}"
        )
        reason = self.stopped if self.stopped == "early_stopping" else None
        while reason is None and self.epoch < cfg.max_epochs:
            if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                reason = "max_steps"
                break
            reason = self._train_epoch()
            if reason is not None:
                break
            if (self.epoch + 1) % cfg.eval_every == 0 or self.epoch + 1 == cfg.max_epochs:
                self._end_of_evaluation("epoch", adjust=True)
                self.epoch_metrics = []
                if cfg.patience is not None and self.bad_evals >= cfg.patience:
                    reason = "early_stopping"
            else:
                self.epoch_metrics = []
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
            self.stopped = reason
            self.save_checkpoint()
        reason = reason or "max_epochs"
        self.stopped = reason
        if not self.history or self.history[-1]["step"] != self.global_step:
            self._end_of_evaluation("final", adjust=False)
        if self.main and not self.model_path.exists():
            self.export(self.state.variables(ema=True))
        self.save_checkpoint()
        self.say(
            f"stopped ({reason}) after {self.global_step} steps, "
            f"{time.time() - self.t0:.1f} s; best model (epoch {self.best_epoch}) -> "
            f"{self.model_path}"
        )
        test_metrics = self.test()
        if self.main:
            self.ckpt.close()
            self._log_file.close()
        pot = Potential.load(self.model_path) if self.main else None  # None on the others
        return FitResult(
            self.out,
            self.model_path,
            pot,
            self.state,
            self.history,
            self.valid_metrics,
            test_metrics,
            reason,
            self.global_step,
            self.epoch,
            time.time() - self.t0,
        )

    def test(self) -> dict:
        """Evaluate the exported model on every test set; writes ``test_metrics.json``."""
        if not self.setup.test_loaders:
            return {}
        variables = jax.device_put(self._exported_variables(), self.repl)
        out = {}
        for name, loader in self.setup.test_loaders.items():
            out[name] = self.evaluate(loader, variables)
            self.say(f"test [{name}] " + format_metrics(out[name]))
        if self.main:
            (self.out / "test_metrics.json").write_text(json.dumps(out, indent=1))
        return out

    def _exported_variables(self):
        """The exported model's variables, on every process (multi-host: process 0 reads the
        file and sends them; where their layout differs from the trained variables, e.g.
        merged LoRA adapters, every process uses its final EMA variables instead)."""
        pot = Potential.load(self.model_path, dtype=self.cfg.dtype) if self.main else None
        if distributed.process_count() == 1:
            return pot.variables
        own = jax.device_get(self.state.variables(ema=True))
        layout = lambda t: jax.tree.map(lambda x: (np.shape(x), str(np.asarray(x).dtype)), t)  # noqa: E731
        same = distributed.broadcast_json(pot is not None and layout(pot.variables) == layout(own))
        return distributed.broadcast_tree(pot.variables if (same and self.main) else own)


def fit(
    config: TrainConfig | dict | str | Path,
    overrides: Sequence[str] = (),
    callbacks: Sequence[Callable] = (),
    data: TrainingData | None = None,
) -> FitResult:
    """Train a TACE model.

    Args:
        config: a :class:`TrainConfig`, a mapping, or a YAML path.
        overrides: ``key=value`` strings applied on top (YAML path or mapping only).
        callbacks: see :class:`Trainer`.
        data: pre-loaded structures (otherwise read from the config's files).

    Returns:
        :class:`FitResult` with the exported best EMA :class:`~tace_jax.inference.Potential`.
    """
    if isinstance(config, (str, Path)):
        cfg = load_config(config, overrides)
    elif isinstance(config, dict):
        cfg = config_from_dict(apply_overrides(config, overrides))
    else:
        cfg = config
    if cfg.replay_model and data is None:  # multi-head replay fine-tuning (train.replay)
        from .replay import fit_replay

        return fit_replay(cfg, callbacks=callbacks)
    t0 = time.time()
    return Trainer(setup_training(cfg, data), callbacks, t0=t0).run()
