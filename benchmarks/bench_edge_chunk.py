"""Balanced against power-of-two edge chunks in the interactions, timed side by side.

``tace_jax.ops.scan_edges`` streams the edges in ``ceil(E / chunk)`` chunks; with balanced
chunks (the default, :func:`tace_jax.ops._segment.balanced_chunk`) the last chunk carries less
padding (aspirin: 384 edges as 2 × 192 rows instead of 2 × 256). Both variants are compiled in
one process on the same padded graph of the default TACE config (random weights, float32) and
timed alternately (median of ``--repeats`` E+F calls), so the ratio compares like with like.

Usage::

    python benchmarks/bench_edge_chunk.py --systems aspirin,water --repeats 15
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_model import build_system  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", default="aspirin,water")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    import jax
    import numpy as np

    import tace_jax.ops._segment as seg
    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    balanced = seg.balanced_chunk

    def pow2(n_edges, n_chunks, multiple=8):
        return 2 ** math.ceil(math.log2(-(-n_edges // n_chunks)))

    cfg = TACEConfig(atomic_numbers=(1, 6, 8, 14))
    e0 = np.array([[-13.6, -1029.0, -2042.0, -7875.0]])
    stats = Statistics(e0, np.full((1, 4), 1.0), np.zeros((1, 4)), 32.0)
    for name in args.systems.split(","):
        atoms = build_system(name)
        fns = {}
        for mode, rule in (("balanced", balanced), ("pow2", pow2)):
            seg.balanced_chunk = rule  # read when the model is traced
            pot = Potential.init(cfg, stats, jax.random.key(0), dtype="float32")
            graph = pot.graph_from_atoms(atoms)
            fn = lambda pot=pot, graph=graph: pot.compute(graph, ("energy", "forces"))
            fns[mode] = (fn, jax.block_until_ready(fn()))
        seg.balanced_chunk = balanced
        df = np.max(np.abs(np.asarray(fns["balanced"][1]["forces"]) - fns["pow2"][1]["forces"]))
        times = {m: [] for m in fns}
        for _ in range(args.repeats):
            for m, (fn, _) in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times[m].append(time.perf_counter() - t0)
        med = {m: 1e3 * float(np.median(t)) for m, t in times.items()}
        print(
            f"{name}: {len(atoms)} atoms, budgets {graph.budgets}; balanced {med['balanced']:.2f} "
            f"ms, pow2 {med['pow2']:.2f} ms, pow2/balanced {med['pow2'] / med['balanced']:.3f}; "
            f"max |ΔF| {df:.1e} eV/Å"
        )


if __name__ == "__main__":
    main()
