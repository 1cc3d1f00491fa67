"""Time the Latent Ewald Summation energy + forces (``tace_jax.ops.latent_ewald``).

Systems (random positions and neutral random charges at water density, 0.1 atoms/Å³):

* ``water``: 192 atoms in a 12.42 Å cubic box (k-grid (6, 6, 6) with dl = 2 Å);
* ``big``: 3,000 atoms in a 31.07 Å cubic box (k-grid (15, 15, 15));
* ``big_molecule``: the same 3,000 atoms without periodicity (chunked pair sum).

The timed call is the jitted ``value_and_grad`` of the energy in positions (median over
``--repeats`` after a warm-up), in float32 and float64. With ``--model`` the short-range TACE
model (default config, random weights) is timed on the same periodic structures in the same
run, through ``tace_jax.inference.Potential``, and the ratio LES/model is printed.

Usage::

    python benchmarks/bench_les.py                      # LES only, both dtypes
    python benchmarks/bench_les.py --systems water --model --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

SYSTEMS = {"water": (192, True), "big": (3000, True), "big_molecule": (3000, False)}
DENSITY = 0.1  # atoms / Å^3


def build(name: str, seed: int = 0):
    n, periodic = SYSTEMS[name]
    rng = np.random.default_rng(seed)
    box = (n / DENSITY) ** (1 / 3)
    x = rng.uniform(size=(n, 3)) * box
    q = rng.normal(size=n) * 0.5
    return q - q.mean(), x, np.eye(3) * box, periodic


def _median_time(fn, args, repeats: int) -> tuple[float, float]:
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))  # compile + warm-up
    t_first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), t_first


def time_les(name: str, dtype: str, repeats: int) -> dict:
    import jax

    from tace_jax.ops import ewald_kgrid, latent_ewald

    q, x, cell, periodic = build(name)
    grid = ewald_kgrid(cell) if periodic else None

    @jax.jit
    def energy_forces(q_, x_, c_):
        e, g = jax.value_and_grad(
            lambda p: latent_ewald(q_, p, c_, periodic, kgrid=grid, dtype=dtype)
        )(x_)
        return e, -g

    args = tuple(np.asarray(a, dtype) for a in (q, x, cell))
    med, first = _median_time(energy_forces, args, repeats)
    return {"system": name, "atoms": len(q), "dtype": dtype, "kgrid": grid, "les_s": med,
            "first_s": first}  # fmt: skip


def time_model(name: str, dtype: str, repeats: int) -> float:
    import ase
    import jax

    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    q, x, cell, periodic = build(name)
    numbers = np.where(np.arange(len(q)) % 3 == 0, 8, 1)
    atoms = ase.Atoms(numbers=numbers, positions=x, cell=cell, pbc=periodic)
    cfg = TACEConfig(atomic_numbers=(1, 8))
    stats = Statistics(np.array([[-13.6, -2042.0]]), np.ones((1, 2)), np.zeros((1, 2)), 32.0)
    pot = Potential.init(cfg, stats, jax.random.key(0), dtype=dtype)
    graph = pot.graph_from_atoms(atoms)
    med, _ = _median_time(lambda g: pot.compute(g, ("energy", "forces")), (graph,), repeats)
    return med


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="water,big,big_molecule")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--model", action="store_true", help="also time the short-range model")
    args = ap.parse_args(argv)

    import jax

    if "float64" in args.dtypes:
        jax.config.update("jax_enable_x64", True)
    try:
        import tace_jax  # noqa: F401
    except ImportError:  # running from a source checkout
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    print(f"device: {jax.devices()[0]}; median of {args.repeats} runs (energy + forces, jit)")
    head = f"{'system':>13} {'atoms':>6} {'dtype':>8} {'kgrid':>13} {'LES ms':>10} {'1st s':>7}"
    print(head + (f" {'model ms':>10} {'LES/model':>9}" if args.model else ""))
    for name in args.systems.split(","):
        for dtype in args.dtypes.split(","):
            r = time_les(name, dtype, args.repeats)
            line = (
                f"{r['system']:>13} {r['atoms']:>6} {dtype:>8} {str(r['kgrid']):>13} "
                f"{1e3 * r['les_s']:>10.2f} {r['first_s']:>7.2f}"
            )
            if args.model and SYSTEMS[name][1]:
                t_model = time_model(name, dtype, args.repeats)
                line += f" {1e3 * t_model:>10.1f} {r['les_s'] / t_model:>9.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
