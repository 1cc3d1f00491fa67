"""Cost of the field response (P, α, Z*) against energy + forces, side by side in one run.

Model: the TACE default config (2 layers, ν = 3, 48 channels, L_n = 2, L_e = 3, r_c = 6 Å,
random weights) with the electric-field embedding (docs/theory.md §2.5). Systems from
``bench_model.py``: aspirin (21 atoms) and the 192-atom water box. For each system the two
property sets are compiled on the same padded graph and timed alternately (median of
``--repeats`` calls after a warm-up, ``block_until_ready``), so the ratio compares like with like
on this machine at this moment.

Usage::

    python benchmarks/bench_response.py                  # float32, both systems
    python benchmarks/bench_response.py --dtype float64 --repeats 5 --systems aspirin

Target (issue 9): energy + forces + P + α + Z* at most 4× the cost of energy + forces.
"""

from __future__ import annotations

import argparse
import os
import statistics as stats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_model import build_system  # noqa: E402

BASE = ("energy", "forces")
RESPONSE = ("energy", "forces", "polarization", "conservative_polarizability",
            "born_effective_charges")  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", default="aspirin,water")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--channels", type=int, default=48)
    args = p.parse_args(argv)

    import jax
    import numpy as np

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # the benchmark's own explicit choice
    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    zs = (1, 6, 8)
    cfg = TACEConfig(
        atomic_numbers=zs, num_channel=args.channels, equivariant_embeddings=("electric_field",)
    )
    pot = Potential.init(cfg, Statistics.default(len(zs)), jax.random.key(0), dtype=args.dtype)
    print(f"backend {jax.default_backend()}, {args.dtype}, model {pot}")
    print(f"{'system':8s} {'atoms':>5s} {'E+F ms':>9s} {'E+F+P+α+Z* ms':>14s} {'ratio':>6s}")
    for name in args.systems.split(","):
        atoms = build_system(name)
        graph = pot.graph_from_atoms(atoms, electric_field=[0.01, -0.02, 0.005])
        fns = {props: (lambda g, props=props: pot.compute(g, props)) for props in (BASE, RESPONSE)}
        for fn in fns.values():  # compile
            jax.block_until_ready(fn(graph))
        times = {props: [] for props in fns}
        for _ in range(args.repeats):  # interleaved
            for props, fn in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn(graph))
                times[props].append(time.perf_counter() - t0)
        base, resp = (1e3 * stats.median(times[k]) for k in (BASE, RESPONSE))
        out = pot.compute(graph, RESPONSE)
        zsum = float(np.abs(np.asarray(out["born_effective_charges"]).sum(0)).max())
        print(
            f"{name:8s} {len(atoms):5d} {base:9.1f} {resp:14.1f} {resp / base:6.2f}"
            f"   (|Σ_i Z*_i| = {zsum:.1e})"
        )


if __name__ == "__main__":
    main()
