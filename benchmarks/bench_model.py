"""Time energy + forces of the default TACE model on CPU and compare with the reference.

Systems (TACE default config: 2 layers, ν = 3, 48 channels, L_n = 2, L_e = 3, r_c = 6 Å,
random weights):

* ``aspirin``: 21 atoms, molecule;
* ``water``: 64 H2O (192 atoms) in a 12.42 Å cubic box (≈ 1 g/cm³), periodic;
* ``si``: diamond Si, 6×6×5 conventional cells = 1,440 atoms, periodic.

Each system runs in its own subprocess so that its peak memory (``ru_maxrss``) is its own. The
timed call is the compiled ``compute_properties(..., ("energy", "forces"))`` on a prebuilt padded
graph (median over repeats after a warm-up call, ``block_until_ready``); the neighbour-list /
graph build and the compile time are reported separately.

Usage::

    python benchmarks/bench_model.py --threads 1            # the reference setting
    python benchmarks/bench_model.py --systems aspirin,water --repeats 5 --dtype float64

This script times tace_jax alone. The comparison with the reference PyTorch TACE 0.1.0 is
``benchmarks/compare_reference.py``, which times both side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ASPIRIN_Z = [6, 6, 8, 8, 6, 6, 6, 6, 6, 6, 6, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1]
ASPIRIN_XYZ = [
    [-2.5893, -2.2604, 0.0368], [-1.6833, -1.1671, -0.4342], [-1.5412, -0.8285, -1.5476],
    [-1.1966, -0.5108, 0.7282], [-0.2354, 0.4835, 0.3601], [-0.7068, 1.7725, 0.4781],
    [0.1718, 2.8416, 0.1058], [1.4829, 2.5793, -0.2203], [2.0186, 1.2691, -0.1506],
    [1.0586, 0.2374, 0.0549], [1.5727, -1.1953, 0.1089], [0.9025, -2.2437, 0.4497],
    [2.9409, -1.2762, -0.2911], [-2.9503, -2.8438, -0.7921], [-3.4758, -1.8739, 0.6279],
    [-1.9943, -2.9879, 0.7128], [-1.7602, 2.0218, 0.705], [-0.2665, 3.8667, 0.1521],
    [2.1341, 3.3991, -0.4617], [3.0131, 1.0934, -0.4372], [3.1395, -2.2544, -0.242],
]  # fmt: skip


def build_system(name: str):
    """The ``ase.Atoms`` of one benchmark system."""
    import ase
    import ase.build
    import numpy as np

    if name == "aspirin":
        return ase.Atoms(numbers=ASPIRIN_Z, positions=ASPIRIN_XYZ)
    if name == "water":
        rng = np.random.default_rng(0)
        box, n = 12.42, 4
        angle = np.deg2rad(104.52)
        mol = np.array(
            [[0, 0, 0], [0.9572, 0, 0], [0.9572 * np.cos(angle), 0.9572 * np.sin(angle), 0]]
        )
        pos, numbers = [], []
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    q = rng.normal(size=4)
                    q /= np.linalg.norm(q)
                    w, x, y, z = q
                    rot = np.array([
                        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
                    ])  # fmt: skip
                    centre = (np.array([i, j, k]) + 0.5) * box / n
                    pos.extend(centre + mol @ rot.T)
                    numbers.extend([8, 1, 1])
        return ase.Atoms(numbers=numbers, positions=pos, cell=[box] * 3, pbc=True)
    if name == "si":
        return ase.build.bulk("Si", "diamond", a=5.43, cubic=True).repeat((6, 6, 5))
    raise ValueError(f"unknown system {name!r}")


def run_one(name: str, dtype: str, repeats: int) -> dict:
    """Benchmark one system in this process; returns a json-able dict."""
    import resource

    import jax
    import numpy as np

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    try:
        import tace_jax  # noqa: F401
    except ImportError:  # running from a source checkout
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    cfg = TACEConfig(atomic_numbers=(1, 6, 8, 14))
    e0 = np.array([[-13.6, -1029.0, -2042.0, -7875.0]])
    stats = Statistics(e0, np.full((1, 4), 1.0), np.zeros((1, 4)), 32.0)
    pot = Potential.init(cfg, stats, jax.random.key(0), dtype=dtype)
    atoms = build_system(name)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GB (ru_maxrss in kB)
    t0 = time.perf_counter()
    graph = pot.graph_from_atoms(atoms)
    t_graph = time.perf_counter() - t0

    def compiled(variables, graph):  # Potential.compute: jitted once per shape
        return pot.compute(graph, ("energy", "forces"))

    t0 = time.perf_counter()
    jax.block_until_ready(compiled(pot.variables, graph))  # compile + first call
    t_compile = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(pot.variables, graph))
        times.append(time.perf_counter() - t0)
    f = np.asarray(out["forces"])[: len(atoms)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    stats_dev = jax.devices()[0].memory_stats() or {}
    return {
        "system": name,
        "atoms": len(atoms),
        "edges": int(np.asarray(graph.edge_mask).sum()),
        "budgets": list(graph.budgets),
        "median_s": float(np.median(times)),
        "min_s": float(np.min(times)),
        "repeats": repeats,
        "compile_s": t_compile,
        "graph_s": t_graph,
        "peak_rss_gb": peak,
        "rss_before_gb": rss0,
        "device_peak_gb": stats_dev.get("peak_bytes_in_use", 0) / 2**30 or None,
        "finite": bool(np.isfinite(f).all()),
        "device": str(jax.devices()[0]),
    }


def _table(rows: list[dict], threads) -> str:
    head = (
        "| system | atoms | edges | median (min) time | compile | peak RSS |\n"
        "|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['atoms']} | {r['edges']} | {r['median_s'] * 1e3:.1f} "
            f"({r['min_s'] * 1e3:.1f}) ms | {r['compile_s']:.1f} s | {r['peak_rss_gb']:.2f} GB |"
        )
    return f"threads: {threads}\n\n" + "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", default="aspirin,water,si")
    p.add_argument("--threads", type=int, default=None, help="1 = single-threaded XLA + taskset")
    p.add_argument("--repeats", type=int, default=None, help="default: 20 / 5 / 3 by size")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="also write the results to this json file")
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(a.one, a.dtype, a.repeats or 5)))
        return
    env = dict(os.environ)
    if a.threads == 1:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _threads import one_thread

        env, _ = one_thread(env, [], pin=False)  # pinned per system below
    rows = []
    for name in a.systems.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--one", name, "--dtype", a.dtype]
        repeats = a.repeats or {"aspirin": 20, "water": 5}.get(name, 3)
        cmd += ["--repeats", str(repeats)]
        if a.threads == 1 and hasattr(os, "sched_getaffinity"):
            cpu = sorted(os.sched_getaffinity(0))[-1]
            cmd = ["taskset", "-c", str(cpu), *cmd]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"benchmark of {name} failed (exit {proc.returncode})")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    print()
    print(_table(rows, a.threads or "all"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
