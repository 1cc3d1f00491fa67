"""Aggregate throughput of batched replicas against sequential single runs (same process).

Replicas: diamond Si cells of 8, 16 and 24 atoms (``--cells cubic``; ``mixed``: 8, 2 and 16, the
2-atom primitive cell needing 5³ lattice images), rattled, each under ``--seeds`` seeds, padded
to one bucket (the largest) and integrated together by
:func:`tace_jax.md.replicas.rollout_replicas` (one ``vmap``-ed rollout, ``--ensemble``,
``--steps`` steps of 1 fs at 600 K). Sequential: the same replicas one after the other with
:func:`tace_jax.md.rollout` on their own :func:`~tace_jax.md.md_system` (each compiled once
before timing). Potential: the Morse test potential (``tace_jax.testing.MorsePotential``,
cutoff 4 Å). Printed: wall time (best of ``--repeat``, after compilation), aggregate real
atom-steps/s of both, and their ratio.

Usage::

    python benchmarks/bench_replicas.py
    python benchmarks/bench_replicas.py --steps 500 --seeds 4 --ensemble langevin --dtype float64
    python benchmarks/bench_replicas.py --cells mixed
"""

from __future__ import annotations

import argparse
import time

import jax


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=2, help="seeds per structure")
    ap.add_argument("--ensemble", default="nve")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cells", default="cubic", choices=["cubic", "mixed"])
    args = ap.parse_args()
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)

    import jax.numpy as jnp
    from ase.build import bulk

    from tace_jax.md import initial_momenta, md_system, rollout
    from tace_jax.md.replicas import replica_batch, rollout_replicas
    from tace_jax.testing import MorsePotential

    pot = MorsePotential(atomic_numbers=(14,), cutoff=4.0, dtype=args.dtype, r0=2.35, depth=0.5)
    cube = bulk("Si", "diamond", 5.43, cubic=True)
    if args.cells == "mixed":  # with the 2-atom primitive cell: 5x5x5 images for every replica
        cells = [cube, bulk("Si", "diamond", 5.43), cube.repeat((2, 1, 1))]
    else:
        cells = [cube, cube.repeat((2, 1, 1)), cube.repeat((3, 1, 1))]
    for k, a in enumerate(cells):
        a.rattle(0.05, seed=k)
    structs = [a for a in cells for _ in range(args.seeds)]
    seeds = list(range(len(structs)))
    kw = dict(timestep=1.0, temperature=600.0, friction=0.02)
    steps = args.steps
    atom_steps = sum(len(a) for a in structs) * steps

    def best(fn):
        jax.block_until_ready(fn())  # compile
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - t0)
        return min(times)

    batch = replica_batch(pot, structs, seeds=seeds, temperature=600.0)
    batched = jax.jit(lambda: rollout_replicas(batch, steps, args.ensemble, **kw))
    t_batch = best(batched)

    singles = []
    for a, seed in zip(structs, seeds):
        s = md_system(pot, a)
        nb = s.neighbor_fn.allocate(s.positions)
        p = jnp.asarray(initial_momenta(a, 600.0, seed), s.parts.dtype)
        key = jax.random.PRNGKey(seed)
        singles.append(
            jax.jit(
                lambda s=s, nb=nb, p=p, key=key: rollout(
                    s, nb, (s.positions, p), steps, args.ensemble, key=key, **kw
                )
            )
        )
    for f in singles:
        jax.block_until_ready(f())  # compile all first
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for f in singles:
            jax.block_until_ready(f())
        times.append(time.perf_counter() - t0)
    t_seq = min(times)

    sizes = [len(a) for a in structs]
    print(
        f"{len(structs)} replicas, sizes {sizes} (bucket {batch.bucket}, list capacity "
        f"{batch.capacity}, {batch.translations.shape[0]} images), {args.ensemble}, {steps} "
        f"steps, {args.dtype}, {jax.devices()[0].platform}"
    )
    print("| run | wall (s) | atom-steps/s |")
    print("|---|---|---|")
    print(f"| batched (vmap, padded) | {t_batch:.3f} | {atom_steps / t_batch:.3e} |")
    print(f"| sequential single runs | {t_seq:.3f} | {atom_steps / t_seq:.3e} |")
    print(f"ratio batched/sequential: {t_seq / t_batch:.2f}x")


if __name__ == "__main__":
    main()
