"""Element-dependent linears with 5 and 89 elements: the select, grouped and sorted paths.

Two measurements, side by side in one run:

1. the op alone, :func:`tace_jax.ops.element_linear` with ``method="select"`` and
   ``"grouped"``, for ``Z = 5`` and ``Z = 89``, at the shapes of the default model
   (rank 0 and 2, the product-basis fan-in of ``ν = 3``);
2. the default TACE model (energy + forces, compiled, prebuilt padded graph) on one periodic
   cubic supercell of about ``--atoms`` atoms (8·k³) carrying 5 different elements, built
   once with ``atomic_numbers`` of 5 elements and once of 89 (a universal model): what a
   universal model pays for its unused elements. Each model runs twice: with the element-sorted
   product basis (``Potential.element_sort``, the default for one structure: static
   per-element row budgets, each element's rows times its own weights) and without it
   (``element_sort=False``: the ``method="auto"`` select/grouped paths).

Usage::

    python benchmarks/bench_element_linear.py [--atoms 512] [--repeats 3] [--skip-model]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _time(fn, *args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def op_table(n: int, repeats: int) -> None:
    import jax
    import jax.numpy as jnp

    from tace_jax.ops import element_linear

    rng = np.random.default_rng(0)
    print(f"op: element_linear, N = {n} nodes, float32, median of {repeats}")
    head = ("M", "C_in", "D", "Z", "select ms", "grouped ms", "sel/grp")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (2, 5, 3, 3, 10, 11, 8))))
    for m, c in ((1, 48), (5, 48), (5, 480)):
        for z in (5, 89):
            x = jnp.asarray(rng.normal(size=(n, m, c)), jnp.float32)
            w = jnp.asarray(rng.normal(size=(z, 48, c)), jnp.float32)
            oh = jnp.asarray(np.eye(z)[rng.integers(0, 5, n)], jnp.float32)  # 5 species present
            t = {}
            for method in ("select", "grouped"):
                f = jax.jit(lambda x, w, oh, method=method: element_linear(x, w, oh, method))
                t[method] = _time(f, x, w, oh, repeats=repeats)
            print(
                f"{m:2d} {c:5d} {48:3d} {z:3d} {1e3 * t['select']:10.2f} "
                f"{1e3 * t['grouped']:11.2f} {t['select'] / t['grouped']:8.2f}",
                flush=True,
            )


def model_table(n_atoms: int, repeats: int) -> None:
    import jax
    from ase.build import bulk

    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    reps = max(1, round((n_atoms / 8) ** (1 / 3)))
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((reps, reps, reps))
    rng = np.random.default_rng(0)
    present = [6, 8, 14, 26, 29]
    atoms.numbers = rng.choice(present, len(atoms))
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    print(f"\nmodel: default TACE, E+F, {len(atoms)} atoms of 5 elements, float32")
    fns = {}
    for label, zs in (("5 elements", tuple(present)), ("89 elements", tuple(range(1, 90)))):
        cfg = TACEConfig(atomic_numbers=zs)
        stats = Statistics.default(len(zs))
        pot = Potential.init(cfg, stats, jax.random.key(0), dtype="float32")
        unsorted = Potential(cfg, stats, pot.variables, "float32", element_sort=False)
        graph = jax.device_put(pot.graph_from_atoms(atoms))
        for mode, p in (("sorted", pot), ("unsorted", unsorted)):
            fns[label, mode] = (p.compute, graph)
            jax.block_until_ready(p.compute(graph))  # compile outside the timed rounds
    rounds = {k: [] for k in fns}
    for _ in range(3):  # interleaved rounds: the four variants see the same machine state
        for k, (f, g) in fns.items():
            rounds[k].append(_time(f, g, repeats=repeats))
    times = {k: float(np.median(v)) for k, v in rounds.items()}
    print(f"  {'':12s} {'sorted':>9s} {'unsorted':>10s}   (median of 3 interleaved rounds)")
    for label in ("5 elements", "89 elements"):
        row = f"{1e3 * times[label, 'sorted']:9.1f} {1e3 * times[label, 'unsorted']:10.1f} ms"
        print(f"  {label:12s} {row}", flush=True)
    for mode in ("sorted", "unsorted"):
        ratio = times["89 elements", mode] / times["5 elements", mode]
        print(f"  ratio 89/5 ({mode}): {ratio:.2f}")
    gain = times["89 elements", "unsorted"] / times["89 elements", "sorted"]
    print(f"  unsorted/sorted, 89 elements: {gain:.2f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--atoms", type=int, default=1440)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-model", action="store_true")
    a = p.parse_args(argv)
    op_table(a.atoms, a.repeats)
    if not a.skip_model:
        model_table(a.atoms, a.repeats)


if __name__ == "__main__":
    main()
