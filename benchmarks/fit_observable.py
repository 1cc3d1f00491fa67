"""Observable fitting: gradients by direct differentiation and by DiffTRe reweighting, then fits.

System: diamond Si, 8 atoms, Morse test potential (``tace_jax.testing.MorsePotential``,
r0 = 2.35 Å, depth 0.5 eV, cutoff 4 Å), Langevin at 600 K (friction 0.05/fs, dt = 2 fs, fixed
key), float64. Parameter θ: a scale on the Morse depth. Observable: the potential energy per
atom, averaged after ``--discard`` steps. Printed:

1. the gradient table at θ = 1: the direct gradient (reverse mode through the rollout) with
   its forward-mode value and central FD of the same trajectory average (h = 1e-5); the DiffTRe
   gradient (autodiff of the reweighted estimator, and the −β·Cov form) with the central FD of
   the reweighted estimator; and a wide FD (θ ± 0.02, common random numbers) of the direct
   average as the ensemble reference;
2. both fitting loops to the average of a run at θ = 1.2 (direct: ``--fit-steps`` steps;
   DiffTRe: 3000 steps, discard 500, resampling below ESS 0.9), per iteration θ, ⟨O⟩ and ESS.

Usage::

    python benchmarks/fit_observable.py            # 2000 steps, fits of 600 / 3000 steps
    python benchmarks/fit_observable.py --steps 4000 --discard 800
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from ase.build import bulk  # noqa: E402

from tace_jax.md import initial_momenta, md_system  # noqa: E402
from tace_jax.md.fitting import (  # noqa: E402
    covariance_gradient,
    direct_average,
    fit_observable,
    reweighted_average,
    sample_reference,
)
from tace_jax.testing import MorsePotential  # noqa: E402

KW = dict(ensemble="langevin", friction=0.05, temperature=600.0, timestep=2.0)


def u_per_atom(state, neighbor, energy_fn, box):
    return energy_fn(state.position, neighbor=neighbor) / state.position.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--discard", type=int, default=400)
    ap.add_argument("--every", type=int, default=5, help="DiffTRe frame stride")
    ap.add_argument("--fit-steps", type=int, default=600, help="direct fit trajectory")
    ap.add_argument("--no-fit", action="store_true")
    args = ap.parse_args()

    pot = MorsePotential(atomic_numbers=(14,), cutoff=4.0, dtype="float64", r0=2.35, depth=0.5)
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.02, seed=1)
    s = md_system(pot, atoms)
    nbrs = s.neighbor_fn.allocate(s.positions)
    st0 = (s.positions, jnp.asarray(initial_momenta(atoms, 600.0, seed=0)))
    v = pot.variables
    mk = lambda t: {**v, "params": {**v["params"], "depth": t * v["params"]["depth"]}}
    steps, disc = args.steps, args.discard
    print(f"8 Si atoms, Langevin 600 K, {steps} steps x 2 fs, discard {disc}; O = <U>/N (eV)")

    t0 = time.perf_counter()
    f = jax.jit(
        lambda t: direct_average(
            s, nbrs, st0, steps, u_per_atom, variables=mk(t), discard=disc, **KW
        )
    )
    value, g_dir = jax.jit(jax.value_and_grad(f))(1.0)
    g_fwd = jax.jvp(f, (1.0,), (1.0,))[1]
    fd_dir = (f(1.0 + 1e-5) - f(1.0 - 1e-5)) / 2e-5
    fd_wide = (f(1.02) - f(0.98)) / 0.04
    t_dir = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref = sample_reference(
        s, nbrs, st0, steps, variables=mk(1.0), discard=disc, every=args.every, **KW
    )
    rw = jax.jit(lambda t: reweighted_average(s, mk(t), ref, u_per_atom))
    (value_rw, ess), g_rw = jax.value_and_grad(rw, has_aux=True)(1.0)
    g_cov = jax.jit(lambda t: covariance_gradient(s, t, mk, ref, u_per_atom))(1.0)
    fd_rw = (rw(1.0 + 1e-5)[0] - rw(1.0 - 1e-5)[0]) / 2e-5
    t_rw = time.perf_counter() - t0

    rel = lambda a, b: abs(float(a) - float(b)) / abs(float(b))
    print(f"\n<O>(θ=1): direct {float(value):.6f}, DiffTRe {float(value_rw):.6f} "
          f"({ref.num_frames} frames, ESS {float(ess):.3f})")  # fmt: skip
    print("\n| method | d<O>/dθ (eV/atom) | check | value | rel. diff |")
    print("|---|---|---|---|---|")
    print(f"| direct, reverse mode | {float(g_dir):.8f} | central FD (h=1e-5) | "
          f"{float(fd_dir):.8f} | {rel(g_dir, fd_dir):.1e} |")  # fmt: skip
    print(f"| direct, forward mode | {float(g_fwd):.8f} | reverse mode | {float(g_dir):.8f} | "
          f"{rel(g_fwd, g_dir):.1e} |")  # fmt: skip
    print(f"| DiffTRe, autodiff of estimator | {float(g_rw):.8f} | central FD of estimator | "
          f"{float(fd_rw):.8f} | {rel(g_rw, fd_rw):.1e} |")  # fmt: skip
    print(f"| DiffTRe, −β·Cov form | {float(g_cov):.8f} | autodiff of estimator | "
          f"{float(g_rw):.8f} | {rel(g_cov, g_rw):.1e} |")  # fmt: skip
    print(f"| DiffTRe | {float(g_rw):.8f} | direct | {float(g_dir):.8f} | "
          f"{rel(g_rw, g_dir):.1e} |")  # fmt: skip
    print(f"| direct | {float(g_dir):.8f} | wide FD (θ±0.02) | {float(fd_wide):.8f} | "
          f"{rel(g_dir, fd_wide):.1e} |")  # fmt: skip
    print(f"\nwall (incl. compile): direct {t_dir:.1f} s, DiffTRe {t_rw:.1f} s")

    if args.no_fit:
        return
    for method, n, d in (("direct", args.fit_steps, args.fit_steps // 6), ("difftre", 3000, 500)):
        avg = jax.jit(
            lambda t, n=n, d=d: direct_average(
                s, nbrs, st0, n, u_per_atom, variables=mk(t), discard=d, **KW
            )
        )
        target = float(avg(1.2))
        t0 = time.perf_counter()
        res = fit_observable(
            s, nbrs, st0, n, u_per_atom, target, 1.0, mk, method=method, tol=1e-5,
            iterations=10, discard=d, every=args.every, ess_min=0.9, **KW
        )  # fmt: skip
        wall = time.perf_counter() - t0
        print(f"\nfit ({method}, {n} steps, discard {d}): target <O>(θ=1.2) = {target:.6f}")
        for i, h in enumerate(res.history):
            new = "  (new reference)" if h["resampled"] else ""
            print(f"  it {i}: θ = {float(h['theta']):.6f}  <O> = {h['value']:.6f}  "
                  f"ESS = {h['ess']:.3f}{new}")  # fmt: skip
        fresh = float(avg(res.theta))
        print(f"  converged={res.converged}, θ = {float(res.theta):.6f}, fresh run at θ: "
              f"{fresh:.6f}, references {res.references}, {wall:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
