"""Thread settings shared by the benchmark scripts that time each thread count in a subprocess.

XLA's thread pool is fixed when the process starts, so a one-thread measurement needs its own
process: XLA, torch and BLAS set to one thread and the process pinned to one core.
"""

from __future__ import annotations

import os

__all__ = ["one_thread"]


def one_thread(env: dict, cmd: list[str], pin: bool = True) -> tuple[dict, list[str]]:
    """``(env, cmd)`` for a single-threaded run of ``cmd`` (``env`` is copied, not changed).

    Sets ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` on top of any
    ``XLA_FLAGS``, ``OMP/OPENBLAS/MKL_NUM_THREADS=1`` and, with ``pin``, prefixes ``taskset``
    with the last core of this process' affinity set.
    """
    env = dict(env)
    flags = " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + flags).strip()
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    if pin and hasattr(os, "sched_getaffinity"):
        cmd = ["taskset", "-c", str(sorted(os.sched_getaffinity(0))[-1]), *cmd]
    return env, cmd
