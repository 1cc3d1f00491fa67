"""A short MD demonstration returning summary metrics (used by the README main job)."""

from __future__ import annotations

import time

import numpy as np

from .runners import Simulation

__all__ = ["run_md_demo"]


def run_md_demo(
    potential,
    atoms,
    steps: int = 200,
    ensemble: str = "nve",
    timestep: float = 0.5,
    temperature: float = 300.0,
    log_interval: int | None = None,
    trajectory=None,
    logfile=None,
    progress: bool = False,
    seed: int = 0,
    **kwargs,
) -> dict:
    """Run ``steps`` MD steps of ``atoms`` with ``potential`` and summarise them.

    Args:
        potential: a :class:`tace_jax.models.Potential`.
        atoms: ``ase.Atoms`` (velocities are drawn at ``temperature`` if it has none).
        steps: number of steps.
        ensemble: ``nve``, ``nvt``, ``langevin`` or ``npt``.
        timestep: fs. temperature: K.
        log_interval: steps between observations (default ``max(1, steps // 20)``).
        trajectory, logfile: optional output paths (see :meth:`Simulation.run`).
        progress: show a progress bar.
        seed: velocity / noise seed.
        **kwargs: more :class:`~tace_jax.md.runners.Simulation` options.

    Returns:
        dict with ``ensemble``, ``steps``, ``num_atoms``, ``timestep_fs``, ``wall_time_s``
        (including compilation), ``atom_steps_per_s`` (after the first chunk, i.e. without
        compilation), ``mean_temperature``, ``final_temperature``, ``initial_etot``,
        ``final_etot``, ``conserved_drift_ev_per_atom`` (max |H(t) − H(0)| / N; NaN for
        Langevin), ``max_force`` (eV/Å, final frame), ``reallocations``, ``stable`` (finite
        energies) and ``observations`` (the log).
    """
    steps = int(steps)
    log_interval = int(log_interval or max(1, steps // 20))
    t0 = time.perf_counter()
    sim = Simulation(
        potential,
        atoms,
        ensemble=ensemble,
        timestep=timestep,
        temperature=temperature,
        seed=seed,
        **kwargs,
    )
    first = min(log_interval, steps)
    obs = sim.run(first, log_interval=log_interval, trajectory=None, progress=False)
    t1 = time.perf_counter()
    obs += sim.run(
        steps - first,
        log_interval=log_interval,
        trajectory=trajectory,
        logfile=logfile,
        progress=progress,
    )
    t2 = time.perf_counter()
    n = len(atoms)
    temps = np.array([o["temperature"] for o in obs])
    cons = np.array([o["conserved"] for o in obs])
    etot = np.array([o["etot"] for o in obs])
    final = sim.get_atoms()
    timed = steps - first
    return {
        "ensemble": sim.ensemble,
        "steps": steps,
        "num_atoms": n,
        "timestep_fs": float(timestep),
        "wall_time_s": t2 - t0,
        "atom_steps_per_s": (n * timed / (t2 - t1)) if timed > 0 else float("nan"),
        "mean_temperature": float(temps[1:].mean()) if len(temps) > 1 else float(temps[0]),
        "final_temperature": float(temps[-1]),
        "initial_etot": float(etot[0]),
        "final_etot": float(etot[-1]),
        "conserved_drift_ev_per_atom": float(np.max(np.abs(cons - cons[0])) / n),
        "max_force": float(np.abs(final.get_forces()).max()),
        "reallocations": sim.reallocations,
        "stable": bool(np.all(np.isfinite(etot))),
        "observations": obs,
    }
