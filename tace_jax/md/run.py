"""The one MD entry point: build a :class:`~tace_jax.md.runners.Simulation`, run it, and
summarise the run (used by ``tace-jax md`` and the README main job)."""

from __future__ import annotations

import time

import numpy as np

from .config import MDConfig, md_config
from .io import MDLogger, TrajectoryWriter
from .runners import Simulation

__all__ = ["run_md"]


def run_md(
    potential,
    atoms,
    steps: int,
    config: MDConfig | None = None,
    *,
    trajectory=None,
    logfile=None,
    progress: bool = False,
    callback=None,
    dtype=None,
    inputs: dict | None = None,
    restart=None,
    step: int = 0,
    recorder=None,
    **overrides,
) -> dict:
    """Run ``steps`` MD steps of ``atoms`` with ``potential`` and summarise them.

    The first chunk (``min(config.log_interval, steps)`` steps, which includes the
    compilation) is timed apart from the rest, so ``atom_steps_per_s`` measures the compiled
    integrator.

    Args:
        potential: a :class:`~tace_jax.inference.protocol.PotentialProtocol`.
        atoms: ``ase.Atoms`` (velocities are drawn at the configured temperature if it has
            none), or a list of replicas (see :class:`~tace_jax.md.runners.Simulation`).
        steps: number of steps.
        config: the :class:`~tace_jax.md.config.MDConfig`; default ``MDConfig()``.
        trajectory, logfile: optional output paths (see :meth:`Simulation.run`); they cover the
            whole run, starting with step 0.
        progress: show a progress bar.
        callback: ``callback(sim, observation)`` after each observation.
        dtype: computation dtype (default: the potential's).
        inputs: fixed model inputs (``{"electric_field": [0, 0, 0.1]}``, …).
        restart: path for the last healthy frame should a health check fail.
        step: the step counter to start from (continuing a restart).
        recorder: ``recorder(sim)`` every ``recorder.interval`` steps (see
            :class:`~tace_jax.md.recording.ResponseRecorder`).
        **overrides: :class:`~tace_jax.md.config.MDConfig` fields replacing those of ``config``.

    Returns:
        dict with ``ensemble``, ``steps``, ``num_atoms``, ``replicas``, ``timestep_fs``,
        ``wall_time_s`` (including compilation), ``atom_steps_per_s`` (after the first chunk,
        i.e. without compilation; all replicas; NaN if the run is a single chunk),
        ``mean_temperature`` (K, after step 0), ``final_temperature``, ``initial_etot``,
        ``final_etot``, ``conserved_drift_ev_per_atom`` (max |H(t) − H(0)| / N; NaN for
        Langevin), ``max_force`` (eV/Å, final frame), ``reallocations``, ``stable`` (finite
        energies), ``observations`` (the log; replica 0 when batched), ``final`` (the last
        observation of replica 0) and ``simulation`` (the :class:`Simulation`, for more steps
        or :meth:`~Simulation.get_atoms`).

    Raises:
        SimulationUnstable: a health check failed (see :meth:`Simulation.run`).
    """
    cfg = md_config(config, **overrides)
    steps = int(steps)
    t0 = time.perf_counter()
    sim = Simulation(potential, atoms, cfg, dtype=dtype, inputs=inputs, step=step)
    writer = TrajectoryWriter(trajectory) if trajectory is not None else None
    logger = MDLogger(logfile) if logfile is not None else None
    first = min(int(cfg.log_interval), steps)
    kw = dict(trajectory=writer, logfile=logger, progress=progress, callback=callback)
    kw["restart"] = restart
    kw["recorder"] = recorder
    try:
        obs = sim.run(first, **kw)
        t1 = time.perf_counter()
        obs += sim.run(steps - first, **kw)
        t2 = time.perf_counter()
    finally:
        if writer is not None:
            writer.close()
        if logger is not None:
            logger.close()
    obs = [o[0] for o in obs] if sim.batched else obs
    n, reps = len(sim.templates[0]), len(sim.templates)
    temps = np.array([o["temperature"] for o in obs])
    cons = np.array([o["conserved"] for o in obs])
    etot = np.array([o["etot"] for o in obs])
    final = sim.get_atoms()
    timed = steps - first
    return {
        "ensemble": sim.ensemble,
        "steps": steps,
        "num_atoms": n,
        "replicas": reps,
        "timestep_fs": float(cfg.timestep),
        "wall_time_s": t2 - t0,
        "atom_steps_per_s": (n * reps * timed / (t2 - t1)) if timed > 0 else float("nan"),
        "mean_temperature": float(temps[1:].mean()) if len(temps) > 1 else float(temps[0]),
        "final_temperature": float(temps[-1]),
        "initial_etot": float(etot[0]),
        "final_etot": float(etot[-1]),
        "conserved_drift_ev_per_atom": float(np.max(np.abs(cons - cons[0])) / n),
        "max_force": float(np.abs(final.get_forces()).max()),
        "reallocations": sim.reallocations,
        "stable": bool(np.all(np.isfinite(etot))),
        "observations": obs,
        "final": obs[-1],
        "simulation": sim,
    }
