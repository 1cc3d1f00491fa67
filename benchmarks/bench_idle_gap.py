"""How much slower one energy + forces call is after the process sat idle (CPU).

The side-by-side comparison with the reference (``compare_reference.py``) alternates the two
packages, so every tace_jax call starts after the other side's call (about 100–170 ms on
aspirin) with this process idle. This script measures what that gap alone costs: the compiled
``Potential.compute`` on a prebuilt padded graph (default ``TACEConfig``, random weights,
float32), 30 calls after each ``time.sleep(gap)``, for gaps from 0 (back-to-back, as in MD) to
150 ms; and the same through the ASE calculator (graph build included). Run it once with the
default threads and once pinned to one thread to separate the thread-pool wake-up from the rest
(caches, frequency and vCPU scheduling of the machine)::

    python benchmarks/bench_idle_gap.py
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        taskset -c 0 python benchmarks/bench_idle_gap.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--system", default="aspirin", help="aspirin, water (192) or si (1440)")
    p.add_argument("--calls", type=int, default=30, help="timed calls per gap")
    p.add_argument("--gaps-ms", type=float, nargs="*", default=[0, 0.5, 2, 5, 20, 50, 150])
    a = p.parse_args(argv)
    import jax
    import numpy as np

    sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    from bench_model import build_system
    from compare_mlip import _tace_potential

    from tace_jax.calculator import TACECalculator

    pot = _tace_potential()  # TACEConfig() defaults, elements H C O Si, random weights
    atoms = build_system(a.system)
    graph = jax.device_put(pot.graph_from_atoms(atoms))
    atoms.calc = TACECalculator(pot)
    rng = np.random.default_rng(0)

    def compute():
        t0 = time.perf_counter()
        jax.block_until_ready(pot.compute(graph))
        return time.perf_counter() - t0

    def calculator():
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
        t0 = time.perf_counter()
        atoms.get_forces()
        return time.perf_counter() - t0

    for fn in (compute, calculator):
        for _ in range(5):
            fn()  # compile and warm up
    print(f"{a.system}, {len(atoms)} atoms, {jax.local_device_count()} device(s); medians (min)")
    print("\n| gap | compiled call | ASE calculator |\n|---|---|---|")
    for gap in a.gaps_ms:
        row = []
        for fn in (compute, calculator):
            ts = []
            for _ in range(a.calls):
                if gap:
                    time.sleep(gap / 1e3)
                ts.append(fn())
            row.append(f"{1e3 * np.median(ts):.2f} ({1e3 * min(ts):.2f}) ms")
        print(f"| {gap:g} ms | {row[0]} | {row[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
