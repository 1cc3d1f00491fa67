"""Multi-host (multi-process) training: start-up, process helpers, per-process data shards.

Data parallelism over several processes (one per host or per accelerator) follows the SPMD
layout of :mod:`tace_jax.train.step`: the mesh spans the devices of *all* processes, the
train state is replicated and every step's global batch is split along the ``"data"`` axis.
What this module adds (docs/multihost.md):

* :func:`initialize` starts ``jax.distributed`` from explicit arguments (``--coordinator``,
  ``--num-processes``, ``--process-id`` of ``tace-jax train``) or, when a cluster environment
  says so (SLURM, Open MPI, a multi-host TPU slice, see :func:`cluster_environment`), through
  ``jax.distributed.initialize()`` without arguments. It must run before any JAX
  computation. CPU collectives (gloo) are a process-wide JAX option that the *entry point*
  sets (``tace_jax.cli.train``), never this package at import.
* **Data shards.** The training frames are split by position, process ``K`` of ``N`` keeping
  frames ``K, K + N, K + 2N, …`` (:func:`shard_frames`). Each process shuffles and batches its
  own shard with the shared seed; the global batch of a step is the union of the processes'
  local sub-batches (:func:`global_batch`). Batch budgets and the number of steps per epoch
  are agreed over all processes (:func:`agree_budgets`, :func:`steps_per_epoch`): a process
  whose shard runs out first contributes empty (fully masked) sub-batches, so every process
  runs the same program the same number of times. The loss is the global masked mean over
  the whole step (arXiv 2509.14961, training objective), so the gradient equals that of the
  same frames in one process.
* Only process 0 writes to the run directory (checkpoints, logs, exported model); restored
  state and host metadata travel from process 0 to the others with :func:`broadcast_tree`
  and :func:`broadcast_json`.

A process that dies makes the next collective of the others fail (gloo: "connection closed
by peer"); a process that hangs is declared dead by the coordination service after
``heartbeat_timeout`` seconds. :func:`is_peer_failure` recognises these errors so that the
entry point can stop with a clear message instead of waiting.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from tace_jax.data.shard_data import ShardSubset

from .step import empty_like, group_batches, stack_batches

__all__ = [
    "agree_budgets",
    "broadcast_json",
    "broadcast_tree",
    "cluster_environment",
    "global_batch",
    "initialize",
    "is_main_process",
    "is_peer_failure",
    "local_mesh_devices",
    "padded_groups",
    "process_count",
    "process_index",
    "shard_frames",
    "shard_training_data",
    "steps_per_epoch",
]

#: Substrings of the runtime errors raised when another process of the run is gone.
_PEER_FAILURE_MARKS = (
    "connection closed by peer",
    "gloo",
    "heartbeat",
    "unavailable",
    "coordination service",
    "barrier",
    "connection reset",
    "socket closed",
)


def _int_env(name: str, default: int = 1) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def cluster_environment() -> str | None:
    """The multi-process cluster this process runs in, if any: ``"slurm"``, ``"openmpi"``,
    ``"tpu"`` or ``None``.

    Only environments with more than one process count (a one-task SLURM job is a plain run):
    SLURM with ``SLURM_JOB_ID`` and ``SLURM_NTASKS > 1``; Open MPI with
    ``OMPI_COMM_WORLD_SIZE > 1``; a TPU slice whose ``TPU_WORKER_HOSTNAMES`` names more than one
    host. ``jax.distributed.initialize()`` reads the coordinator and ranks from these itself.
    """
    env = os.environ
    if "SLURM_JOB_ID" in env and _int_env("SLURM_NTASKS", _int_env("SLURM_NPROCS")) > 1:
        return "slurm"
    if _int_env("OMPI_COMM_WORLD_SIZE") > 1:
        return "openmpi"
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(hosts) > 1:
        return "tpu"
    return None


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = True,
    initialization_timeout: int = 300,
    heartbeat_timeout: int = 100,
) -> str | None:
    """Start ``jax.distributed`` for a multi-process run (call before any JAX computation).

    Args:
        coordinator: ``host:port`` of process 0's coordination service.
        num_processes: number of processes of the run.
        process_id: this process's rank, ``0 <= process_id < num_processes``.
        auto: without explicit arguments, initialise from the cluster environment when
            :func:`cluster_environment` finds one.
        initialization_timeout: seconds to wait for all processes to connect.
        heartbeat_timeout: seconds without a heartbeat after which a process is declared dead
            (the others then fail instead of waiting forever).

    Returns:
        ``"explicit"``, the cluster name, or ``None`` when nothing was started (one process).

    Raises:
        ValueError: an incomplete or inconsistent set of arguments.
    """
    given = {
        "--coordinator": coordinator,
        "--num-processes": num_processes,
        "--process-id": process_id,
    }
    missing = [k for k, v in given.items() if v is None]
    timeouts = dict(
        initialization_timeout=int(initialization_timeout),
        heartbeat_timeout_seconds=int(heartbeat_timeout),
    )
    if len(missing) == 3:
        kind = cluster_environment() if auto else None
        if kind is not None:
            jax.distributed.initialize(**timeouts)
        return kind
    if missing:
        raise ValueError(
            "multi-process training needs --coordinator, --num-processes and --process-id "
            f"together; missing {', '.join(missing)}"
        )
    n, k = int(num_processes), int(process_id)
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--process-id {k} must be in [0, --num-processes {n})")
    if ":" not in str(coordinator):
        raise ValueError(f"--coordinator {coordinator!r} must be host:port (e.g. node0:12345)")
    if n == 1:
        return None
    jax.distributed.initialize(
        coordinator_address=str(coordinator), num_processes=n, process_id=k, **timeouts
    )
    return "explicit"


def process_index() -> int:
    """This process's rank (0 in a single-process run)."""
    return jax.process_index()


def process_count() -> int:
    """Number of processes of the run (1 unless :func:`initialize` started several)."""
    return jax.process_count()


def is_main_process() -> bool:
    """True on process 0, the only one that writes files."""
    return jax.process_index() == 0


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` looks like a lost peer (dead or unreachable process) in a multi-process
    run; always False in a single-process run."""
    if jax.process_count() == 1:
        return False
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(mark in text for mark in _PEER_FAILURE_MARKS)


# ---------------------------------------------------------------------------- data shards
def shard_frames(frames: Sequence, index: int | None = None, count: int | None = None) -> list:
    """Frames ``index, index + count, …`` of ``frames`` (default: this process of all)."""
    index = jax.process_index() if index is None else int(index)
    count = jax.process_count() if count is None else int(count)
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} must be in [0, {count})")
    if isinstance(frames, ShardSubset):  # preprocessed shards: a lazy view, nothing read
        return frames[index::count]
    return list(frames)[index::count]


def shard_training_data(data):
    """``data`` (a :class:`~tace_jax.train.prepare.TrainingData`) with only this process's
    shard of the *training* frames; validation and test sets stay whole (every process
    evaluates them collectively). Unchanged in a single-process run.

    Raises:
        ConfigError: fewer training frames than processes.
    """
    n = jax.process_count()
    if n == 1:
        return data
    if len(data.train) < n:
        from .config import ConfigError

        raise ConfigError(
            f"{len(data.train)} training structures cannot be shared by {n} processes"
        )
    if getattr(data, "streaming", False):  # train_dir: only this process's shard is read
        out = copy.copy(data)
        out.train = shard_frames(data.train)
        return out
    return dataclasses.replace(data, train=shard_frames(data.train))


def _allgather(values) -> np.ndarray:
    """``[process_count, ...]`` stack of every process's ``values`` (int or float array)."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(values)))


def agree_budgets(loader):
    """Give ``loader`` the element-wise largest ``(N, E, G)`` budgets of all processes, so
    that the local sub-batches of every process have the same padded shapes (a global array
    needs them). Returns ``loader``; a no-op with one process."""
    if jax.process_count() > 1:
        agreed = _allgather(np.asarray(loader.budgets, np.int32)).max(axis=0)
        loader.budgets = tuple(int(b) for b in agreed)
    return loader


def local_mesh_devices(mesh: Mesh) -> int:
    """Number of ``mesh`` devices that belong to this process."""
    me = jax.process_index()
    return sum(d.process_index == me for d in mesh.devices.flat)


def steps_per_epoch(loader, mesh: Mesh, epoch: int = 0) -> int:
    """Optimiser steps of ``epoch``: the largest over processes of ``ceil(local batches /
    local devices)`` (every process must run the same number of steps)."""
    local = math.ceil(loader.num_batches(epoch) / max(local_mesh_devices(mesh), 1))
    if jax.process_count() == 1:
        return local
    return int(_allgather(np.asarray([local], np.int32)).max())


def padded_groups(loader, epoch: int, start: int, n_local: int, n_steps: int) -> Iterator:
    """Exactly ``n_steps`` ``(stacked [n_local, ...] batch, number of real sub-batches)``
    groups of ``loader``'s batches ``start, …`` of ``epoch``; once they run out, groups of
    empty (fully masked) sub-batches follow, so that every process runs the same number of
    steps."""
    k = 0
    for k, group in enumerate(group_batches(loader.epoch_batches(epoch, start), n_local), 1):
        if k > n_steps:
            raise RuntimeError(f"this process has more than the agreed {n_steps} steps")
        yield group
    if k < n_steps:
        example = loader.make_batch(loader.plan(0)[0])
        empty = stack_batches([empty_like(example)] * n_local)
        for _ in range(n_steps - k):
            yield empty, 0


def global_batch(local_stacked, mesh: Mesh):
    """The step's global batch from this process's sub-batches.

    Args:
        local_stacked: ``Graph`` with leaves ``[D_local, ...]`` (one sub-batch per local device
            of ``mesh``, :func:`~tace_jax.train.step.stack_batches`).
        mesh: the global ``("data",)`` mesh.

    Returns:
        Global arrays ``[D, ...]`` sharded with ``P("data")`` (built with
        ``jax.make_array_from_process_local_data``).
    """
    sharding = NamedSharding(mesh, P("data"))
    if jax.process_count() == 1:
        return jax.device_put(local_stacked, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_stacked
    )


# ---------------------------------------------------------------------------- broadcasts
def broadcast_tree(tree):
    """Process 0's ``tree`` (numpy leaves) on every process; every process passes a tree of
    the same structure, shapes and dtypes. Identity with one process."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    host = jax.tree.map(np.asarray, jax.device_get(tree))
    return multihost_utils.broadcast_one_to_all(host)


def broadcast_json(obj):
    """Process 0's JSON-serialisable ``obj`` on every process (the others may pass anything)."""
    if jax.process_count() == 1:
        return obj
    from jax.experimental import multihost_utils

    raw = json.dumps(obj).encode() if jax.process_index() == 0 else b""
    size = int(multihost_utils.broadcast_one_to_all(np.asarray(len(raw), np.int32)))
    buf = np.zeros(size, np.uint8)
    if raw:
        buf[:] = np.frombuffer(raw, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf), np.uint8)
    return json.loads(out.tobytes().decode())
