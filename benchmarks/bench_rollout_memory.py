"""Peak memory of the gradient of a long differentiable rollout: segmented vs unsegmented.

System: diamond Si, 8 atoms, Morse test potential (``tace_jax.testing.MorsePotential``),
Langevin at 600 K with friction 0.1/fs and a fixed key (an NVE gradient over 10 ps is
dominated by chaotic growth, ~1e60 here), dt = 1 fs, float64. Objective: the mean potential
energy over ``--steps`` steps, differentiated w.r.t. a scale on the initial momenta. For each
``checkpoint_every`` (``0`` = one plain ``lax.scan``; default ``⌈√steps⌉``),
``jax.jit(jax.grad(f))`` is compiled and XLA's ``memory_analysis()`` temporary buffer size is
printed (the peak scratch memory of the compiled gradient; arguments and outputs are a few
bytes). ``--run`` also executes the gradients and prints them, the wall time and a central
finite difference (h = 1e-5).

Usage::

    python benchmarks/bench_rollout_memory.py --steps 10000
    python benchmarks/bench_rollout_memory.py --steps 10000 --segments 0,default,1000 --run
"""

from __future__ import annotations

import argparse
import math
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from ase.build import bulk  # noqa: E402

from tace_jax.md import initial_momenta, md_system, rollout  # noqa: E402
from tace_jax.testing import MorsePotential  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--segments", default="0,default", help="comma list; 0 = unsegmented")
    ap.add_argument("--run", action="store_true", help="also execute the gradients")
    args = ap.parse_args()

    pot = MorsePotential(atomic_numbers=(14,), cutoff=4.0, dtype="float64", r0=1.5)
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.02, seed=1)
    s = md_system(pot, atoms)
    nbrs = s.neighbor_fn.allocate(s.positions)
    p0 = jnp.asarray(initial_momenta(atoms, 600.0, seed=0))
    steps = args.steps
    kw = {"timestep": 1.0, "friction": 0.1, "temperature": 600.0}
    rows = []
    for tok in args.segments.split(","):
        every = None if tok == "default" else int(tok)
        label = f"{math.isqrt(steps - 1) + 1} (default)" if every is None else str(every)

        def f(lam, every=every):
            obs = rollout(s, nbrs, (s.positions, lam * p0), steps, "langevin", every, **kw)[1]
            return jnp.mean(obs["epot"])

        t0 = time.perf_counter()
        compiled = jax.jit(jax.grad(f)).lower(1.0).compile()
        t_compile = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        temp = int(mem.temp_size_in_bytes)
        row = {"checkpoint_every": label, "temp_MiB": temp / 2**20, "compile_s": t_compile}
        if args.run:
            t0 = time.perf_counter()
            row["grad"] = float(compiled(1.0))
            row["run_s"] = time.perf_counter() - t0
            fv = jax.jit(f)
            row["fd"] = float((fv(1.0 + 1e-5) - fv(1.0 - 1e-5)) / 2e-5)
        rows.append(row)
        print(row, flush=True)
    if len(rows) > 1:
        base = rows[0]["temp_MiB"]
        for r in rows[1:]:
            ratio = base / r["temp_MiB"]
            print(f"{rows[0]['checkpoint_every']} vs {r['checkpoint_every']}: {ratio:.1f}x")


if __name__ == "__main__":
    main()
