"""Timing of the TACE model hot path (energy + forces) on CPU, for design choices.

Run single-threaded, as the reference timings were taken::

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        taskset -c 0 python benchmarks/bench_layout_model.py [--dtype float32] [--systems water,si]

Systems: ``aspirin`` (21 atoms, the fixture geometry), ``water`` (192 atoms: 64 randomly
rotated H2O on a 4×4×4 grid in a 12.42 Å cubic box) and ``si`` (1440-atom diamond supercell).
The comparison with the reference PyTorch TACE is ``compare_reference.py`` (same run).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import ase
import ase.build
import jax
import numpy as np
from scipy.spatial.transform import Rotation

from tace_jax.data import graph_from_atoms
from tace_jax.models import TACE, Statistics, TACEConfig

HERE = os.path.dirname(os.path.abspath(__file__))


def water_box(n: int = 4, box: float = 12.42, seed: int = 0) -> ase.Atoms:
    """``n³`` randomly rotated water molecules on a grid in a cubic box."""
    rng = np.random.default_rng(seed)
    mol = ase.build.molecule("H2O")
    mol.positions -= mol.get_center_of_mass()
    pos, nums = [], []
    step = box / n
    for ijk in np.ndindex(n, n, n):
        rot = Rotation.random(random_state=rng).as_matrix()
        pos.append(mol.positions @ rot.T + (np.array(ijk) + 0.5) * step)
        nums.extend(mol.numbers)
    return ase.Atoms(numbers=nums, positions=np.concatenate(pos), cell=[box] * 3, pbc=True)


def silicon(n_rep=(6, 6, 5)) -> ase.Atoms:
    """Diamond silicon supercell (8·6·6·5 = 1440 atoms), slightly rattled."""
    at = ase.build.bulk("Si", "diamond", a=5.43, cubic=True).repeat(n_rep)
    at.rattle(0.05, seed=1)
    return at


def aspirin() -> ase.Atoms:
    path = os.path.join(HERE, "..", "tests", "fixtures", "tace_default.json")
    if os.path.exists(path):
        s = json.load(open(path))["systems"]["aspirin"]
        return ase.Atoms(numbers=s["numbers"], positions=s["positions"])
    return ase.build.molecule("CH3COOH")


def energy_forces_fn(model):
    def fn(variables, graph):
        def e(pos):
            out = model.apply(variables, graph.replace(positions=pos))
            return out["energy"].sum(), out

        (_, out), g = jax.value_and_grad(e, has_aux=True)(graph.positions)
        return out["energy"], -g

    return jax.jit(fn)


def time_fn(fn, *args, repeat=5):
    """Best wall time and best process CPU time (robust on a shared machine) over ``repeat``."""
    out = fn(*args)
    jax.block_until_ready(out)
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--systems", default="aspirin,water,si")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--edge-chunk", default="auto", help="'auto', 'none' or an integer")
    ap.add_argument("--multiple", type=int, default=64, help="padding multiple of the budgets")
    args = ap.parse_args(argv)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = np.dtype(args.dtype)
    builders = {"aspirin": aspirin, "water": water_box, "si": silicon}
    for name in args.systems.split(","):
        atoms = builders[name]()
        zs = tuple(sorted(set(atoms.numbers.tolist())))
        cfg = TACEConfig(atomic_numbers=zs)
        stats = Statistics.default(len(zs))
        graph = graph_from_atoms(atoms, cfg.cutoff, zs, dtype=dtype, multiple=args.multiple)
        chunk = args.edge_chunk if args.edge_chunk == "auto" else None
        if args.edge_chunk not in ("auto", "none"):
            chunk = int(args.edge_chunk)
        model = TACE(cfg, stats, edge_chunk=chunk)
        variables = model.init(jax.random.key(0), graph)
        variables = jax.tree.map(lambda a: a.astype(dtype), variables)
        fn = energy_forces_fn(model)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(variables, graph))
        t_compile = time.perf_counter() - t0
        t_wall, t_cpu = time_fn(fn, variables, graph, repeat=args.repeat)
        n_edges = int(np.asarray(graph.edge_mask).sum())
        print(
            f"{name:8s} atoms={len(atoms):5d} edges={n_edges:7d} {args.dtype} chunk={chunk} "
            f"energy+forces: wall {t_wall * 1e3:9.1f} ms  cpu {t_cpu * 1e3:9.1f} ms  "
            f"(first call incl. compile {t_compile:.1f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
