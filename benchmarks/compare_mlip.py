"""tace_jax against mlip's NequIP (InstaDeep ``mlip==0.2.5``), timed side by side in one run.

Needs ``mlip`` importable next to tace_jax, best in a side environment used for this benchmark
only (mlip is imported by nothing else)::

    python3 -m venv /work/venv-mlip
    /work/venv-mlip/bin/pip install mlip==0.2.5
    /work/venv-mlip/bin/pip install -e .   # takes jax back to tace_jax's pin (mlip allows it)
    /work/venv-mlip/bin/python benchmarks/compare_mlip.py

Both packages then share one process, one jax/jaxlib and one XLA thread pool. Without mlip the
script exits with a message; it never falls back to numbers from another run.

The two models, each at its package's defaults, random weights, float32, for the elements
H, C, O, Si:

* tace_jax: ``TACEConfig(atomic_numbers=(1, 6, 8, 14))`` (2 layers, ν = 3, 48 channels,
  L_n = 2, L_e = 3, r_c = 6 Å), as in ``bench_model.py``;
* mlip: ``Nequip(NequipConfig(), DatasetInfo(...))`` with the graph cutoff of mlip's
  ``GraphDatasetBuilderConfig()`` default (5 Å); the dataset statistics that do not change
  the cost (atomic energies, average number of neighbours) are set as for tace_jax. The
  hyperparameters are printed.

What is timed, per system (``aspirin`` 21 atoms, ``water`` 192-atom box, ``si`` 1,440-atom
diamond Si; the systems of ``bench_model.py``):

* **E+F**: the compiled energy + forces call on a prebuilt padded graph, parameters passed as
  arguments (``Potential.compute`` for tace_jax; ``jax.jit(predictor.apply)`` of the mlip
  ``ForceField`` for mlip, which is what its ASE calculator calls), ``block_until_ready``; one
  warm-up call (compilation) then ``repeats`` calls of each, the two sides alternating in every
  repeat (the order flips each repeat). Median and min are reported.
* **graph build**: each side's own neighbour list + padding from ``ase.Atoms`` (tace_jax:
  ``Potential.graph_from_atoms``; mlip: ``ChemicalSystem.from_ase_atoms`` +
  ``Graph.from_chemical_system`` + ``dynamically_batch`` with the edge headroom of its ASE
  calculator, 1.25), timed separately (median over the repeats).
* **training step** (row ``train``): one jitted Adam step (``optax.adam(1e-3)``) of the same
  E+F loss, ``mean(((E - E_ref) / n_atoms)^2) + mean(|F - F_ref|^2)`` over the real
  structures / atoms, for a batch of ``--train-batch`` displaced copies of aspirin with random
  labels (their values do not change the cost). Each side differentiates its own E+F
  prediction (forces = -dE/dx) with respect to its parameters (double backprop). This is an
  equivalent step written once for both, not each package's own training loop (no EMA,
  gradient clipping or metrics on either side). The row also gives XLA's cost analysis (FLOPs
  and bytes accessed) of each side's E+F call and loss gradient on that batch, and the
  train-step FLOP rate it implies: how much arithmetic each model needs, apart from how fast
  it runs.

Each system and thread count runs in its own subprocess (XLA's thread pool is fixed at start;
a crash loses only that row): ``1`` pins the process to one core (``taskset``) and sets XLA and
BLAS to one thread; ``2`` gives two. ``--mlip-cutoff 6`` gives mlip tace_jax's cutoff (same
neighbour count) as an extra, non-default comparison.

Usage::

    /work/venv-mlip/bin/python benchmarks/compare_mlip.py                  # all, 2 threads
    /work/venv-mlip/bin/python benchmarks/compare_mlip.py --systems aspirin --repeats 2
    /work/venv-mlip/bin/python benchmarks/compare_mlip.py --threads 1 2 --json mlip.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _threads import one_thread  # noqa: E402

Z = (1, 6, 8, 14)
E0 = (-13.6, -1029.0, -2042.0, -7875.0)
AVG_NEIGHBOURS = 32.0
EDGE_HEADROOM = 1.25  # mlip's default ASE edge capacity multiplier


# ----------------------------------------------------------------------------- models
def _tace_potential():
    import jax
    import numpy as np

    from tace_jax.inference import Potential
    from tace_jax.models import Statistics, TACEConfig

    cfg = TACEConfig(atomic_numbers=Z)
    stats = Statistics(np.array([E0]), np.full((1, 4), 1.0), np.zeros((1, 4)), AVG_NEIGHBOURS)
    return Potential.init(cfg, stats, jax.random.key(0), dtype="float32")


def _mlip_force_field(cutoff=None):
    """mlip's NequIP at its defaults (graph cutoff: ``GraphDatasetBuilderConfig``'s)."""
    from mlip.data import DatasetInfo, GraphDatasetBuilderConfig
    from mlip.models import ForceField, Nequip

    if cutoff is None:
        cutoff = GraphDatasetBuilderConfig.model_fields["graph_cutoff_angstrom"].default
    info = DatasetInfo(
        atomic_energies_map=dict(zip(Z, E0)),
        graph_cutoff_angstrom=cutoff,
        avg_num_neighbors=AVG_NEIGHBOURS,
    )
    net = Nequip(Nequip.Config(), info)
    return ForceField.from_mlip_network(net, seed=0)


def _hyper(pot, ff) -> dict:
    """The size-setting hyperparameters of tace_jax and every field of mlip's NequIP config."""
    import jax

    keys = "cutoff num_layers correlation num_channel lmax_node lmax_edge num_radial_basis"
    tace = {k: getattr(pot.config, k) for k in keys.split()}
    tace.update(radial_hidden=list(pot.config.radial_hidden), num_params=int(pot.num_params))
    mlip = {"cutoff": ff.cutoff_distance, **ff.config.model_dump(mode="json")}
    mlip["num_params"] = int(sum(x.size for x in jax.tree.leaves(ff.params)))
    return {"tace_jax": tace, "mlip_nequip": mlip}


# ----------------------------------------------------------------------------- graphs
def _mlip_graph(atoms_list, cutoff: float):
    """mlip's padded batch of ``atoms_list`` (+ one dummy graph), as its ASE calculator."""
    import numpy as np
    from mlip.data.chemical_system import ChemicalSystem
    from mlip.data.helpers.dynamically_batch import dynamically_batch
    from mlip.graph import Graph
    from mlip.graph.edge_ordering import DEFAULT_EDGE_ORDERING

    graphs = [
        Graph.from_chemical_system(
            ChemicalSystem.from_ase_atoms(a, get_property_fields=False),
            cutoff,
            ordering=DEFAULT_EDGE_ORDERING,
        )
        for a in atoms_list
    ]
    n_edge = sum(len(g.senders) for g in graphs)
    budgets = (
        sum(len(a) for a in atoms_list) + 1,
        math.ceil(EDGE_HEADROOM * n_edge) + 1,
        len(graphs) + 1,
    )
    batch = next(dynamically_batch(graphs, *budgets))
    real = np.asarray(batch.n_node)[: len(graphs)]
    if len(batch.n_node) != budgets[2] or real.sum() != budgets[0] - 1:
        raise RuntimeError(f"mlip batch holds {real.tolist()} nodes, expected all of {budgets}")
    return batch, n_edge, budgets


def _provenance() -> dict:
    """Commit of the tace_jax checkout and its uncommitted package files (read-only git)."""

    def git(*args):
        try:
            out = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True)
        except OSError:
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    dirty = git("status", "--porcelain", "--", os.path.join(os.path.dirname(HERE), "tace_jax"))
    modified = [line.strip() for line in dirty.splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "modified": modified}


def _median_min(xs):
    import numpy as np

    return float(np.median(xs)), float(np.min(xs))


def _interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Warm-up (compile) each of ``fns`` once, then ``repeats`` alternating timed calls."""
    import jax

    first, times, out = {}, {k: [] for k in fns}, {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        out[k] = jax.block_until_ready(fn())
        first[k] = time.perf_counter() - t0
    keys = list(fns)
    for rep in range(repeats):
        for k in keys if rep % 2 == 0 else keys[::-1]:
            t0 = time.perf_counter()
            out[k] = jax.block_until_ready(fns[k]())
            times[k].append(time.perf_counter() - t0)
    return {k: (*_median_min(times[k]), first[k]) for k in keys}, out


def _timing_fields(t: dict) -> dict:
    """Row fields of :func:`_interleaved`'s timings (ms; first call in s)."""
    out = {"ratio": t["mlip"][0] / t["tace_jax"][0]}
    for k in ("tace_jax", "mlip"):
        out.update({f"{k}_ms": 1e3 * t[k][0], f"{k}_min_ms": 1e3 * t[k][1]})
        out[f"{k}_first_s"] = t[k][2]
    return out


# ----------------------------------------------------------------------------- E + F
def _ef_row(name, atoms, pot, ff, repeats, threads) -> dict:
    import jax
    import numpy as np

    mlip_apply = jax.jit(ff.predictor.apply)
    gt = {"tace_jax": [], "mlip": []}
    for _ in range(max(repeats, 1)):  # graph builds, alternating
        t0 = time.perf_counter()
        g_tace = pot.graph_from_atoms(atoms)
        gt["tace_jax"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        g_mlip, mlip_edges, mlip_budgets = _mlip_graph([atoms], ff.cutoff_distance)
        gt["mlip"].append(time.perf_counter() - t0)
    g_tace, g_mlip = jax.device_put(g_tace), jax.device_put(g_mlip)
    fns = {
        "tace_jax": lambda: pot.compute(g_tace, ("energy", "forces"))["forces"],
        "mlip": lambda: mlip_apply(ff.params, g_mlip).nodes.forces,
    }
    t, out = _interleaved(fns, repeats)
    n = len(atoms)
    finite = {k: bool(np.isfinite(np.asarray(v)[:n]).all()) for k, v in out.items()}
    for k, ok in finite.items():
        if not ok:
            raise RuntimeError(f"{name}: {k} gave non-finite forces")
    return {
        "system": name,
        "task": "E+F",
        "atoms": n,
        "threads": threads,
        "repeats": repeats,
        "tace_jax_edges": int(np.asarray(g_tace.edge_mask).sum()),
        "mlip_edges": int(mlip_edges),
        "tace_jax_padded": list(g_tace.budgets),
        "mlip_padded": list(mlip_budgets),
        **_timing_fields(t),
        "tace_jax_graph_ms": 1e3 * float(np.median(gt["tace_jax"])),
        "mlip_graph_ms": 1e3 * float(np.median(gt["mlip"])),
        "finite": all(finite.values()),
    }


# ----------------------------------------------------------------------------- training
def _train_batch(n: int, seed: int):
    """``n`` displaced aspirin copies with random labels (``bench_train_step.synthetic_frames``)."""
    import numpy as np

    sys.path.insert(0, HERE)
    from bench_train_step import synthetic_frames

    frames = synthetic_frames(n, seed)
    energies = np.array([a.get_potential_energy() for a in frames])
    forces = np.concatenate([a.get_forces() for a in frames])
    for a in frames:
        a.calc = None
    return frames, energies, forces


def _labels(energies, forces, num_graphs: int, num_nodes: int, n_atoms: int):
    """Padded label arrays (real structures first, as both packages' batches are laid out)."""
    import numpy as np

    e = np.zeros(num_graphs, np.float32)
    e[: len(energies)] = energies
    f = np.zeros((num_nodes, 3), np.float32)
    f[: len(forces)] = forces
    gm = np.zeros(num_graphs, bool)
    gm[: len(energies)] = True
    nm = np.zeros(num_nodes, bool)
    nm[: len(forces)] = True
    n = np.full(num_graphs, float(n_atoms), np.float32)
    return e, f, gm, nm, n


def _ef_loss(e, f, labels):
    import jax.numpy as jnp

    e_ref, f_ref, gm, nm, n_at = labels
    de = jnp.where(gm, (e - e_ref) / n_at, 0.0)
    df = jnp.where(nm[:, None], f - f_ref, 0.0)
    return jnp.sum(de**2) / jnp.sum(gm) + jnp.sum(df**2) / (3 * jnp.sum(nm))


def _make_step(predict, opt):
    """Jitted ``(params, opt_state, graph, labels) -> (params, opt_state, loss)``."""
    import jax
    import optax

    def loss_fn(params, graph, labels):
        e, f = predict(params, graph)
        return _ef_loss(e, f, labels)

    @jax.jit
    def step(params, opt_state, graph, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, graph, labels)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def _xla_cost(fn, *args) -> tuple[float, float]:
    """XLA's own cost analysis of the compiled ``fn(*args)``: (GFLOP, MB accessed)."""
    import jax

    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost["flops"] / 1e9, cost["bytes accessed"] / 1e6


def _train_cost(predicts: dict, state: dict, args: dict) -> dict:
    """Row fields: GFLOP and MB of each side's E+F call and of its loss gradient (XLA's count).

    XLA counts a ``while`` body once, so tace_jax's count uses the unchunked interaction
    (``edge_chunk=None``, the same arithmetic without the edge loop). The timed step does the
    chunked one, whose rematerialisation redoes some work, so the rate printed from these
    counts is a useful-FLOP rate (a lower bound on what tace_jax executes).
    """
    import jax

    out = {}
    for k, pred in predicts.items():
        params, (graph, labels) = state[k][0], args[k]
        grad = jax.grad(lambda p, g, lab, pred=pred: _ef_loss(*pred(p, g), lab))
        out[f"{k}_ef_gflop"], out[f"{k}_ef_mb"] = _xla_cost(pred, params, graph)
        out[f"{k}_grad_gflop"], out[f"{k}_grad_mb"] = _xla_cost(grad, params, graph, labels)
    return out


def _train_row(pot, ff, repeats, threads, batch, seed) -> dict:
    import jax
    import numpy as np
    import optax

    from tace_jax.properties import compute_properties

    frames, energies, forces = _train_batch(batch, seed)
    n_at = len(frames[0])
    g_tace = pot.graph_from_atoms(frames)
    g_mlip, _, mlip_budgets = _mlip_graph(frames, ff.cutoff_distance)
    g_tace, g_mlip = jax.device_put(g_tace), jax.device_put(g_mlip)
    lab_tace = _labels(energies, forces, g_tace.num_graphs, g_tace.num_nodes, n_at)
    lab_mlip = _labels(energies, forces, mlip_budgets[2], mlip_budgets[0], n_at)

    def tace_predict(params, graph):
        out = compute_properties(
            pot.apply_fn,
            {**pot.variables, "params": params},
            graph,
            ("energy", "forces"),
            training=True,
        )
        return out["energy"], out["forces"]

    def mlip_predict(params, graph):
        g = ff.predictor.apply({**ff.params, "params": params}, graph)
        return g.globals.energy, g.nodes.forces

    opt = optax.adam(1e-3)
    state = {
        "tace_jax": [pot.variables["params"], None],
        "mlip": [ff.params["params"], None],
    }
    for k in state:
        state[k][1] = opt.init(state[k][0])
    steps = {"tace_jax": _make_step(tace_predict, opt), "mlip": _make_step(mlip_predict, opt)}
    args = {"tace_jax": (g_tace, lab_tace), "mlip": (g_mlip, lab_mlip)}
    losses = {}

    def runner(k):
        def run():
            p, s, loss = steps[k](*state[k], *args[k])
            state[k][:] = [p, s]
            losses[k] = loss
            return loss

        return run

    t, _ = _interleaved({k: runner(k) for k in state}, repeats)
    for k, v in losses.items():
        if not np.isfinite(float(v)):
            raise RuntimeError(f"train: {k} gave a non-finite loss")
    unchunked = pot.model.clone(edge_chunk=None)

    def tace_unchunked(params, graph):
        props = ("energy", "forces")
        variables = {**pot.variables, "params": params}
        out = compute_properties(unchunked.apply, variables, graph, props, training=True)
        return out["energy"], out["forces"]

    cost = _train_cost({"tace_jax": tace_unchunked, "mlip": mlip_predict}, state, args)
    return {
        "system": f"aspirin x{batch}",
        "task": "train step",
        "atoms": batch * n_at,
        "threads": threads,
        "repeats": repeats,
        "tace_jax_padded": list(g_tace.budgets),
        "mlip_padded": list(mlip_budgets),
        **_timing_fields(t),
        **cost,
        "finite": True,
    }


# ----------------------------------------------------------------------------- driver
def run_one(threads: int, name: str, repeats: int, train_batch: int, seed: int, cutoff):
    """Time both packages on one system in this process; returns ``(hyperparameters, row)``."""
    import resource

    import jax

    try:
        import tace_jax  # noqa: F401
    except ImportError:  # running from a source checkout
        sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    from bench_model import build_system

    pot = _tace_potential()
    ff = _mlip_force_field(cutoff)
    hyper = _hyper(pot, ff)
    hyper["jax"] = jax.__version__
    hyper["device"] = str(jax.devices()[0])
    hyper["matmul_precision"] = str(jax.config.jax_default_matmul_precision)
    if name == "train":
        row = _train_row(pot, ff, repeats, threads, train_batch, seed)
    else:
        row = _ef_row(name, build_system(name), pot, ff, repeats, threads)
    row["peak_rss_gb_both"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return hyper, row


def _table(rows: list[dict]) -> str:
    lines = [
        "| task | system | atoms | threads | edges tace_jax / mlip | tace_jax median (min) "
        "| mlip NequIP median (min) | mlip / tace_jax | graph build tace_jax / mlip "
        "| first call tace_jax / mlip |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| - | {r['system']} | - | {r['threads']} | failed (exit {r['error']}) |")
            continue
        edges = f"{r['tace_jax_edges']} / {r['mlip_edges']}" if "mlip_edges" in r else "-"
        graph = (
            f"{r['tace_jax_graph_ms']:.1f} / {r['mlip_graph_ms']:.1f} ms"
            if "mlip_graph_ms" in r
            else "-"
        )
        lines.append(
            f"| {r['task']} | {r['system']} | {r['atoms']} | {r['threads']} | {edges} | "
            f"{r['tace_jax_ms']:.1f} ({r['tace_jax_min_ms']:.1f}) ms | "
            f"{r['mlip_ms']:.1f} ({r['mlip_min_ms']:.1f}) ms | **{r['ratio']:.2f}x** | {graph} | "
            f"{r['tace_jax_first_s']:.1f} / {r['mlip_first_s']:.1f} s |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", default="aspirin,water,si,train", help="aspirin, water, si, train")
    p.add_argument("--threads", type=int, nargs="*", default=[2])
    p.add_argument("--repeats", type=int, default=None, help="default: 20/10/3 (si)/10 (train)")
    p.add_argument("--train-batch", type=int, default=4, help="aspirin copies per train step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the rows to this json file")
    p.add_argument(
        "--mlip-cutoff",
        type=float,
        default=None,
        help="override mlip's default graph cutoff (5 Å), e.g. 6 for tace_jax's; not the default",
    )
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    names = a.systems.split(",")
    unknown = set(names) - {"aspirin", "water", "si", "train"}
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}")
    default = {"aspirin": 20, "water": 10, "si": 3, "train": 10}
    repeats = {n: a.repeats or default[n] for n in names}
    if a.one is not None:
        (name,) = names
        out = run_one(a.one, name, repeats[name], a.train_batch, a.seed, a.mlip_cutoff)
        print(json.dumps(out))
        return 0
    missing = [m for m in ("mlip", "tace_jax") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"compare_mlip: {', '.join(missing)} not importable by {sys.executable}; needs "
            "mlip==0.2.5 next to tace_jax: run it with the side environment's python "
            "(see --help for how to make it)",
            file=sys.stderr,
        )
        return 2
    rows, hyper, failed = [], None, 0
    for nt in a.threads:
        env = dict(os.environ)
        pre = []
        if nt == 1:
            env, pre = one_thread(env, [])
        for name in names:  # one process per system: a crash or OOM loses only its row
            cmd = [*pre, sys.executable, os.path.abspath(__file__), "--one", str(nt)]
            cmd += ["--systems", name, "--repeats", str(repeats[name])]
            cmd += ["--train-batch", str(a.train_batch), "--seed", str(a.seed)]
            if a.mlip_cutoff is not None:
                cmd += ["--mlip-cutoff", str(a.mlip_cutoff)]
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                print(f"compare_mlip: {name} ({nt} threads) failed, exit {proc.returncode}")
                rows.append({"system": name, "threads": nt, "error": proc.returncode})
                failed += 1
                continue
            hyper, row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\nhyperparameters (each package's defaults):")
    print(json.dumps(hyper, indent=1))
    prov = _provenance()
    print(f"tace_jax checkout: {prov['commit']}, uncommitted package files: {prov['modified']}")
    print(
        f"\ncpu cores: {os.cpu_count()}, float32, random weights; E+F: compiled call on a "
        "prebuilt padded graph; train: one jitted Adam step of an E+F MSE loss (median, min)\n"
    )
    print(_table(rows))
    for r in rows:
        if "tace_jax_grad_gflop" in r:
            print(
                f"\nXLA cost analysis, {r['system']} (GFLOP / MB accessed per call): E+F "
                f"tace_jax {r['tace_jax_ef_gflop']:.2f} / {r['tace_jax_ef_mb']:.0f}, mlip "
                f"{r['mlip_ef_gflop']:.2f} / {r['mlip_ef_mb']:.0f}; loss gradient tace_jax "
                f"{r['tace_jax_grad_gflop']:.2f} / {r['tace_jax_grad_mb']:.0f}, mlip "
                f"{r['mlip_grad_gflop']:.2f} / {r['mlip_grad_mb']:.0f}; achieved train-step "
                f"GFLOP/s tace_jax {1e3 * r['tace_jax_grad_gflop'] / r['tace_jax_ms']:.1f}, "
                f"mlip {1e3 * r['mlip_grad_gflop'] / r['mlip_ms']:.1f}"
            )
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"hyperparameters": hyper, "tace_jax": prov, "rows": rows}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
