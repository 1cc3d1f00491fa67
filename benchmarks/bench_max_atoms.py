"""The largest periodic system the default TACE model evaluates (energy + forces) on one device.

Diamond Si supercells of growing size (``--sizes``, in conventional cells per side; 8 atoms
each), each in its own subprocess so that an out-of-memory failure ends only that size. For
each size: the atom and edge counts, the graph build time, compile + first call, the median
time of ``--repeats`` compiled calls, atom-evaluations per second and the device's peak memory
(``memory_stats``; absent on CPU, where the process peak RSS is shown). The scan stops at the
first size that fails and prints why.

Usage::

    python benchmarks/bench_max_atoms.py --sizes 6,12,18,24,30 --dtype float32   # 1,728 .. 216,000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def run_one(n: int, dtype: str, repeats: int) -> dict:
    import resource

    import jax
    from ase.build import bulk

    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((n, n, n))
    atoms.positions += np.random.default_rng(0).normal(scale=0.02, size=atoms.positions.shape)
    cfg = TACEConfig(atomic_numbers=(14,))
    stats = Statistics(np.full((1, 1), -5.0), np.ones((1, 1)), np.zeros((1, 1)), 4.0)
    pot = Potential.init(cfg, stats, jax.random.key(0), dtype=dtype)
    t0 = time.perf_counter()
    graph = pot.graph_from_atoms(atoms)
    t_graph = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(pot.compute(graph))
    t_first = time.perf_counter() - t0
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(pot.compute(graph))
        ts.append(time.perf_counter() - t0)
    mem = jax.devices()[0].memory_stats() or {}
    return {
        "cells": n,
        "atoms": len(atoms),
        "edges": int(np.asarray(graph.edge_mask).sum()),
        "graph_s": t_graph,
        "first_call_s": t_first,
        "median_s": float(np.median(ts)),
        "atoms_per_s": len(atoms) / float(np.median(ts)),
        "device_peak_gib": mem.get("peak_bytes_in_use", 0) / 2**30 or None,
        "rss_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "finite": bool(np.isfinite(np.asarray(out["forces"])).all()),
        "device": str(jax.devices()[0]),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="6,12,18,24,30")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per size")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one is not None:
        print(json.dumps(run_one(a.one, a.dtype, a.repeats)))
        return 0
    largest = None
    head = "| atoms | edges | graph build | compile+first | E+F median | atoms/s | device peak |"
    print(head + "\n|---|---|---|---|---|---|---|", flush=True)
    for n in (int(x) for x in a.sizes.split(",")):
        cmd = [sys.executable, os.path.abspath(__file__), "--one", str(n)]
        cmd += ["--dtype", a.dtype, "--repeats", str(a.repeats)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
        except subprocess.TimeoutExpired:
            print(f"{8 * n**3} atoms: over the {a.timeout:.0f} s limit; stopping")
            break
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
            print(f"{8 * n**3} atoms: failed (exit {proc.returncode}): {tail}")
            break
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        peak = r["device_peak_gib"]
        mem = f"{peak:.1f} GiB" if peak else f"(RSS {r['rss_peak_gib']:.1f} GiB)"
        print(
            f"| {r['atoms']} | {r['edges']} | {r['graph_s']:.1f} s | {r['first_call_s']:.1f} s | "
            f"{1e3 * r['median_s']:.1f} ms | {r['atoms_per_s']:.0f} | {mem} |",
            flush=True,
        )
        largest = r if r["finite"] else largest
    if largest:
        print(f"largest system evaluated: {largest['atoms']} atoms on {largest['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
