"""Full (3^l) vs compressed (2l+1) layout: Cartesian harmonics and irreducible couplings.

At the model's sizes (20,000 edges, 64 channels, l ≤ 3, float32) it times

(a) ``cartesian_harmonics(lmax=3)``: forward, and forward+backward (forward plus the VJP of a
    random cotangent w.r.t. the edge vectors, i.e. the gradient of ``Σ w·Y``);
(b) ``couple(x [E, C, l1], y [E, 1, l2])`` for every allowed ``(l1, l2, l3)`` with ranks ≤ 3,
    full vs compressed, forward and forward+backward (VJP w.r.t. ``x`` and ``y``),
    plus all paths in one jitted function ("all paths");
(c) for the compressed layout, contraction orders of ``out[e,h,c] = Σ x[e,h,a] y[e,b] K[a,b,c]``:
    ``einsum3`` (one three-operand einsum, what ``couple`` does), ``Y·K first`` (precontract the
    harmonics: ``KY[e,a,c] = Σ_b y[e,b] K[a,b,c]``, then a batched matvec over channels: what the
    interaction block would use), ``x·K first``, and ``dense`` (outer product ``x⊗y`` then one
    matmul with ``K`` reshaped to ``(a·b, c)``).

Every function is jitted, warmed up, and timed with ``block_until_ready``; the median over
``--repeats`` runs is reported in milliseconds. Runs on every platform JAX sees (CPU, plus GPU
when present).

Usage::

    python benchmarks/bench_cartesian.py [--edges 20000] [--channels 64] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

try:
    import tace_jax  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tace_jax.ops import cartesian_harmonics, couple, coupling_paths, coupling_tensor  # noqa: E402

LMAX = 3


def _time(fn, args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` in ms (after one warm-up / compilation call)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _fwd_bwd(f, args, seed: int = 1):
    """``(jit(forward + VJP), args + (cotangent,))``.

    The cotangent is a random *argument* (not ``ones``): with ``grad(sum(f))`` XLA would
    constant-fold ``ones @ K`` at compile time and time something the model never does.
    """
    out = jax.eval_shape(f, *args)
    rng = np.random.default_rng(seed)
    ct = jax.tree_util.tree_map(
        lambda s: jax.device_put(jnp.asarray(rng.normal(size=s.shape), s.dtype), _device(args)),
        out,
    )

    def fb(*a):
        *xs, c = a
        y, vjp = jax.vjp(f, *xs)
        return y, vjp(c)

    return jax.jit(fb), (*args, ct)


def _device(args):
    return next(iter(jax.tree_util.tree_leaves(args)[0].devices()))


def _shape(l: int, layout: str) -> tuple[int, ...]:
    return (2 * l + 1,) if layout == "compressed" else (3,) * l


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.1f}"


# ---- (c) contraction orders for the compressed layout ---------------------------------------


def _einsum3(x, y, k):
    return jnp.einsum("...a,...b,abc->...c", x, y, k)


def _y_first(x, y, k):
    ky = jnp.einsum("eb,abc->eac", y[:, 0], k)  # [E, a, c]: once per edge, shared by channels
    return jnp.einsum("eha,eac->ehc", x, ky)


def _x_first(x, y, k):
    xk = jnp.einsum("eha,abc->ehbc", x, k)
    return jnp.einsum("ehbc,eb->ehc", xk, y[:, 0])


def _dense(x, y, k):
    e, h, a = x.shape
    b, c = k.shape[1], k.shape[2]
    outer = (x[..., :, None] * y[..., None, :]).reshape(e, h, a * b)
    return outer @ k.reshape(a * b, c)


ORDERS = {"einsum3": _einsum3, "Y·K first": _y_first, "x·K first": _x_first, "dense": _dense}


def run(edges: int, channels: int, repeats: int, device) -> str:
    rng = np.random.default_rng(0)
    dtype = jnp.float32
    put = lambda a: jax.device_put(jnp.asarray(a, dtype), device)  # noqa: E731
    out = [
        f"### {device.platform.upper()} ({device.device_kind}), E={edges}, C={channels}, "
        f"float32, median of {repeats}\n"
    ]

    # (a) harmonics
    vec = put(rng.normal(size=(edges, 3)))
    rows = []
    res = {}
    for layout in ("full", "compressed"):
        f = lambda v, layout=layout: cartesian_harmonics(v, LMAX, layout=layout)  # noqa: E731
        res[layout] = (_time(jax.jit(f), (vec,), repeats), _time(*_fwd_bwd(f, (vec,)), repeats))
    rows.append(_row("cartesian_harmonics lmax=3", res))
    out.append("(a) harmonics\n\n" + _table(_HEADER, rows) + "\n")

    # (b) couplings
    paths = coupling_paths(LMAX, LMAX, LMAX)
    inputs = {}
    for layout in ("full", "compressed"):
        xs = [put(rng.normal(size=(edges, channels, *_shape(l, layout)))) for l in range(LMAX + 1)]
        ys = [put(rng.normal(size=(edges, 1, *_shape(l, layout)))) for l in range(LMAX + 1)]
        inputs[layout] = (xs, ys)
    rows, totals = [], {"full": [0.0, 0.0], "compressed": [0.0, 0.0]}
    for l1, l2, l3 in paths:
        res = {}
        for layout in ("full", "compressed"):
            xs, ys = inputs[layout]
            f = lambda x, y, p=(l1, l2, l3), lay=layout: couple(x, y, *p, layout=lay)  # noqa: E731
            args = (xs[l1], ys[l2])
            res[layout] = (_time(jax.jit(f), args, repeats), _time(*_fwd_bwd(f, args), repeats))
            totals[layout][0] += res[layout][0]
            totals[layout][1] += res[layout][1]
        rows.append(_row(f"couple {l1}⊗{l2}→{l3}", res))
    rows.append(_row("sum of the paths above", {k: tuple(v) for k, v in totals.items()}))
    res = {}
    for layout in ("full", "compressed"):

        def all_paths(xs, ys, layout=layout):
            return [couple(xs[a], ys[b], a, b, c, layout=layout) for a, b, c in paths]

        args = inputs[layout]
        res[layout] = (
            _time(jax.jit(all_paths), args, repeats),
            _time(*_fwd_bwd(all_paths, args), repeats),
        )
    rows.append(_row(f"all {len(paths)} paths, one jit", res))
    out.append("(b) couple(x [E,C,l1], y [E,1,l2])\n\n" + _table(_HEADER, rows) + "\n")

    # (c) contraction orders, compressed layout
    xs, ys = inputs["compressed"]
    rows = []
    sums = {name: [0.0, 0.0] for name in ORDERS}
    for l1, l2, l3 in paths:
        k = jax.device_put(jnp.asarray(coupling_tensor(l1, l2, l3), dtype), device)
        args = (xs[l1], ys[l2])
        ref = None
        cells = []
        for name, g in ORDERS.items():
            f = lambda x, y, g=g, k=k: g(x, y, k)  # noqa: E731
            val = jax.jit(f)(*args)
            if ref is None:
                ref = val
            else:  # all orders compute the same thing
                np.testing.assert_allclose(
                    val, ref, rtol=2e-4, atol=2e-4 * float(jnp.abs(ref).max())
                )
            t = (_time(jax.jit(f), args, repeats), _time(*_fwd_bwd(f, args), repeats))
            sums[name][0] += t[0]
            sums[name][1] += t[1]
            cells.append(t)
        rows.append([f"{l1}⊗{l2}→{l3}"] + [_fmt(t[0]) for t in cells] + [_fmt(t[1]) for t in cells])
    rows.append(["sum"] + [_fmt(v[0]) for v in sums.values()] + [_fmt(v[1]) for v in sums.values()])
    header = ["path"] + [f"{n} fwd" for n in ORDERS] + [f"{n} fwd+bwd" for n in ORDERS]
    out.append("(c) compressed layout, contraction orders (ms)\n\n" + _table(header, rows) + "\n")
    return "\n".join(out)


_HEADER = [
    "op / path",
    "full fwd ms",
    "compressed fwd ms",
    "full fwd+bwd ms",
    "compressed fwd+bwd ms",
    "ratio full/compr. fwd",
    "ratio full/compr. fwd+bwd",
]


def _row(name: str, res: dict) -> list[str]:
    (ff, fb), (cf, cb) = res["full"], res["compressed"]
    return [name, _fmt(ff), _fmt(cf), _fmt(fb), _fmt(cb), f"{ff / cf:.2f}", f"{fb / cb:.2f}"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=20_000)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--platforms", default=None, help="comma-separated, e.g. 'cpu,gpu' (default: all found)"
    )
    args = parser.parse_args(argv)
    platforms = args.platforms.split(",") if args.platforms else ["cpu", "gpu"]
    print(f"jax {jax.__version__}; backends: {[d.platform for d in jax.devices()]}\n")
    for platform in platforms:
        try:
            device = jax.devices(platform)[0]
        except RuntimeError:
            continue
        print(run(args.edges, args.channels, args.repeats, device), flush=True)


if __name__ == "__main__":
    main()
