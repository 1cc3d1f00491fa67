"""Cost of Latent Ewald Summation: TACE with ``les=True`` against the same short-range TACE model,
side by side in one run (arXiv 2509.14961, docs/theory.md §4).

Systems (``water_box`` of ``benchmarks/bench_md_reference.py``, randomly oriented H2O on a
cubic grid, pbc):

* ``water192``: 64 H2O in the 12.42 Å box (k-grid (6, 6, 6) at dl = 2 Å);
* ``water3000``: 1,000 H2O in a 31.05 Å box (k-grid (15, 15, 15)).

For each system and dtype it times, jitted, median over ``--repeats`` after a warm-up:

* ``SR``: the short-range model, energy + forces (+ stress with ``--stress``), through
  :meth:`tace_jax.inference.Potential.compute`;
* ``LES``: the same config and weights plus the LES term (its latent readout is new), same call;
* ``op``: the LES energy + forces op alone (:func:`tace_jax.ops.latent_ewald`, random neutral
  charges), i.e. what the reciprocal sum itself costs.

and prints ``LES/SR`` (the slowdown of the full model) and ``op/SR``.

Usage::

    python benchmarks/bench_les.py                                   # both systems, float32
    python benchmarks/bench_les.py --systems water192 --repeats 3 --dtypes float32,float64
    python benchmarks/bench_les.py --channels 16                      # a smaller model
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = {"water192": (4, 12.42), "water3000": (10, 31.05)}  # (H2O per side, box Å)


def build(name: str):
    sys.path.insert(0, HERE)
    from bench_md_reference import water_box

    n_side, box = SYSTEMS[name]
    return water_box(n_side=n_side, box=box)


def _median_time(fn, args, repeats: int) -> tuple[float, float]:
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))  # compile + warm-up
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), first


def time_models(atoms, dtype: str, repeats: int, channels: int | None, props) -> dict:
    """Median seconds of the short-range and the LES model (same weights where shared)."""
    import jax

    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    kw = {"num_channel": channels} if channels else {}
    stats = Statistics(np.array([[-13.6, -2042.0]]), np.ones((1, 2)), np.zeros((1, 2)), 32.0)
    out = {}
    for name, les in (("sr", False), ("les", True)):
        cfg = TACEConfig(atomic_numbers=(1, 8), les=les, **kw)
        pot = Potential.init(cfg, stats, jax.random.key(0), dtype=dtype)
        graph = pot.graph_from_atoms(atoms)  # compute() binds the k-grid of the cell
        fn = lambda g, p=pot: p.compute(g, props)
        out[name], out[f"{name}_first"] = _median_time(fn, (graph,), repeats)
    return out


def time_op(atoms, dtype: str, repeats: int) -> tuple[float, tuple]:
    import jax

    from tace_jax.ops import ewald_kgrid, latent_ewald

    rng = np.random.default_rng(0)
    q = rng.normal(size=len(atoms)) * 0.5
    q -= q.mean()
    cell = atoms.cell.array
    grid = ewald_kgrid(cell)

    @jax.jit
    def energy_forces(q_, x_, c_):
        energy = lambda p: latent_ewald(q_, p, c_, True, kgrid=grid, dtype=dtype)
        e, g = jax.value_and_grad(energy)(x_)
        return e, -g

    args = tuple(np.asarray(a, dtype) for a in (q, atoms.positions, cell))
    return _median_time(energy_forces, args, repeats)[0], grid


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="water192,water3000")
    ap.add_argument("--dtypes", default="float32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--channels", type=int, default=None, help="num_channel (default config's)")
    ap.add_argument("--stress", action="store_true", help="also compute the stress")
    args = ap.parse_args(argv)

    import jax

    if "float64" in args.dtypes:
        jax.config.update("jax_enable_x64", True)
    try:
        import tace_jax  # noqa: F401
    except ImportError:  # running from a source checkout
        sys.path.insert(0, os.path.dirname(HERE))

    props = ("energy", "forces", "stress") if args.stress else ("energy", "forces")
    print(f"device: {jax.devices()[0]}; {'+'.join(props)}; median of {args.repeats} (jit)")
    print(f"{'system':>10} {'atoms':>6} {'dtype':>8} {'kgrid':>13} {'SR ms':>9} {'LES ms':>9} "
          f"{'op ms':>8} {'LES/SR':>7} {'op/SR':>6} {'1st SR s':>8} {'1st LES s':>9}")  # fmt: skip
    for name in args.systems.split(","):
        atoms = build(name)
        for dtype in args.dtypes.split(","):
            t = time_models(atoms, dtype, args.repeats, args.channels, props)
            op, grid = time_op(atoms, dtype, args.repeats)
            print(
                f"{name:>10} {len(atoms):>6} {dtype:>8} {str(grid):>13} {1e3 * t['sr']:>9.1f} "
                f"{1e3 * t['les']:>9.1f} {1e3 * op:>8.2f} {t['les'] / t['sr']:>7.2f} "
                f"{op / t['sr']:>6.3f} {t['sr_first']:>8.1f} {t['les_first']:>9.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
