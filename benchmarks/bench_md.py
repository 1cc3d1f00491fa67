"""MD throughput (atom-steps per second) of the default TACE model on CPU.

Model: the default ``TACEConfig`` (2 layers, ν = 3, 48 channels, L_n = 2, L_e = 3, r_c = 6 Å, ZBL)
with random weights, float32 unless ``--dtype float64``. Systems (as in ``bench_model.py``):

* ``aspirin``: 21 atoms, molecule (jax-md free space);
* ``water``: 64 H2O (192 atoms) in a 12.42 Å cubic box (periodic; the box is narrower than
  2·(r_c + skin) so the image neighbour list is used).

For each system an NVE :class:`tace_jax.md.Simulation` (dt = 0.5 fs, 300 K) is compiled on a
first chunk, then ``--steps`` steps are timed (one compiled ``lax.scan`` chunk, neighbour updates
included). ``--ase`` also times ASE's ``VelocityVerlet`` driving :class:`TACECalculator` (one
jitted force call per step plus graph building on the host) as a proxy for a reference
ASE-driven workflow. The reference PyTorch TACE's own ASE MD is timed by
``bench_md_reference.py`` (needs torch and tace 0.1.0); no number of another run is printed
here.

``--health`` measures the cost of the simulation health checks (:mod:`tace_jax.md.health`):
two NVE simulations of the same system, checks on and off, are compiled, then their compiled
chunks of ``--steps`` steps are timed in ``--health-repeats`` interleaved repeats (the order
alternating), and the medians and their ratio are printed.

Usage::

    python benchmarks/bench_md.py --systems aspirin,water --steps 20 --ase
    python benchmarks/bench_md.py --systems water --health --steps 10 --health-repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _systems():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_model import build_system  # noqa: PLC0415

    return build_system


def _potential(atoms_list, dtype: str, seed: int = 0):
    import jax
    import numpy as np

    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    numbers = sorted({int(z) for a in atoms_list for z in a.numbers})
    cfg = TACEConfig(atomic_numbers=tuple(numbers))
    n = len(numbers)
    stats = Statistics(np.zeros((1, n)), np.full((1, n), 0.1), np.zeros((1, n)), 30.0)
    return Potential.init(cfg, stats, jax.random.key(seed), dtype=dtype)


def bench_system(
    name: str, pot, atoms, steps: int, ase_steps: int, skin: float = 0.5, capacity: float = 1.25
) -> dict:
    import numpy as np
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from tace_jax.calculator import TACECalculator
    from tace_jax.md import Simulation

    t0 = time.perf_counter()
    sim = Simulation(
        pot,
        atoms,
        ensemble="nve",
        timestep=0.5,
        temperature=300.0,
        max_chunk=steps,
        skin=skin,
        capacity_multiplier=capacity,
    )
    sim.run(steps, log_interval=steps, progress=False)  # compile + first chunk
    t1 = time.perf_counter()
    sim.run(steps, log_interval=steps, progress=False)
    t2 = time.perf_counter()
    n = len(atoms)
    res = {
        "system": name,
        "atoms": n,
        "neighbor_list": type(sim.nbrs).__name__,
        "capacity": int(sim.nbrs.max_occupancy),
        "skin": skin,
        "capacity_multiplier": capacity,
        "compile_and_first_chunk_s": t1 - t0,
        "ms_per_step": 1e3 * (t2 - t1) / steps,
        "atom_steps_per_s": n * steps / (t2 - t1),
        "reallocations": sim.reallocations,
        "final_temperature": sim.history[-1]["temperature"],
    }
    if ase_steps > 0:
        a = atoms.copy()
        a.set_velocities(np.asarray(sim.get_atoms().get_velocities()))
        a.calc = TACECalculator(pot)
        dyn = VelocityVerlet(a, timestep=0.5 * units.fs)
        dyn.run(1)  # compile
        t3 = time.perf_counter()
        dyn.run(ase_steps)
        t4 = time.perf_counter()
        res["ase_ms_per_step"] = 1e3 * (t4 - t3) / ase_steps
        res["ase_atom_steps_per_s"] = n * ase_steps / (t4 - t3)
    return res


def bench_health(name: str, pot, atoms, steps: int, repeats: int) -> dict:
    """Median ms/step of the compiled NVE chunk with the health checks on and off
    (interleaved repeats)."""
    import jax
    import numpy as np

    from tace_jax.md import Simulation

    sims = {}
    for on in (True, False):
        sim = Simulation(
            pot, atoms, ensemble="nve", timestep=0.5, temperature=300.0, health_checks=on
        )
        sim._advance(steps)  # compile
        jax.block_until_ready(sim.state)
        sims[on] = sim
    times = {True: [], False: []}
    for r in range(repeats):
        for on in (True, False) if r % 2 == 0 else (False, True):
            t0 = time.perf_counter()
            sims[on]._advance(steps)
            jax.block_until_ready(sims[on].state)
            times[on].append(1e3 * (time.perf_counter() - t0) / steps)
    on, off = np.median(times[True]), np.median(times[False])
    pair = np.median(np.array(times[True]) / np.array(times[False]))
    return {
        "system": name,
        "atoms": len(atoms),
        "steps": steps,
        "repeats": repeats,
        "on_ms_per_step": float(on),
        "off_ms_per_step": float(off),
        "ratio_of_medians": float(on / off),
        "median_of_ratios": float(pair),
        "on_all": times[True],
        "off_all": times[False],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", default="aspirin,water")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--ase", action="store_true", help="also time ASE VelocityVerlet")
    p.add_argument("--ase-steps", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--skin", type=float, default=0.5, help="Verlet skin, Å")
    p.add_argument("--capacity", type=float, default=1.25, help="neighbour capacity multiplier")
    p.add_argument("--json", default=None, help="write the results to this file")
    p.add_argument("--health", action="store_true", help="health checks on vs off instead")
    p.add_argument("--health-repeats", type=int, default=7)
    args = p.parse_args(argv)

    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    build = _systems()
    names = [s for s in args.systems.split(",") if s]
    atoms = {s: build(s) for s in names}
    pot = _potential(list(atoms.values()), args.dtype)
    print(f"model: {pot}  devices: {jax.devices()}  cpus: {os.cpu_count()}")
    results = []
    if args.health:
        for s in names:
            r = bench_health(s, pot, atoms[s], args.steps, args.health_repeats)
            results.append(r)
            print(
                f"{s:8s} {r['atoms']:4d} atoms  health checks on {r['on_ms_per_step']:.2f} "
                f"ms/step, off {r['off_ms_per_step']:.2f} ms/step; on/off = "
                f"{r['ratio_of_medians']:.4f} (ratio of medians), {r['median_of_ratios']:.4f} "
                f"(median of paired ratios); {r['repeats']} interleaved repeats of "
                f"{r['steps']} steps",
                flush=True,
            )
        names = []
    for s in names:
        ase_steps = args.ase_steps if args.ase else 0
        r = bench_system(s, pot, atoms[s], args.steps, ase_steps, args.skin, args.capacity)
        results.append(r)
        first = r["compile_and_first_chunk_s"]
        line = (
            f"{s:8s} {r['atoms']:4d} atoms  {r['ms_per_step']:9.1f} ms/step  "
            f"{r['atom_steps_per_s']:9.1f} atom-steps/s  (compile+first {first:.0f} s,"
            f" {r['neighbor_list']})"
        )
        if "ase_ms_per_step" in r:
            line += (
                f"  ASE: {r['ase_ms_per_step']:.1f} ms/step "
                f"{r['ase_atom_steps_per_s']:.1f} atom-steps/s"
            )
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
