"""Where the time of one energy + forces call goes, per model block (CPU profile).

Traces ``--calls`` compiled calls of ``Potential.compute`` (default ``TACEConfig``, random
weights, prebuilt padded graph) with ``jax.profiler``, sums the duration of every XLA op
(thunk) event, and maps each op to the model block that emitted it through the ``op_name``
metadata of the compiled HLO (``interaction_1``, ``product_0``, …; ``fwd`` or ``bwd`` for the
forward pass and its transpose, the forces). Prints the per-block table, the largest single
ops and the op count per call.

Times are *summed op durations per call*: with two threads they can exceed the wall time, and
``while`` loops (edge chunks) are left out because their events contain their bodies' ops.

``--train B`` profiles the parameter gradient of an E+F loss on ``B`` displaced aspirin copies
instead (``bwd2``: the second-order pass, forces differentiated w.r.t. the parameters).

Usage::

    python benchmarks/profile_model.py --system aspirin        # or water, si
    python benchmarks/profile_model.py --system water --calls 5 --top 30
    python benchmarks/profile_model.py --train 4 --calls 10
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_HOST_EVENTS = ("Thunk", "$", "Pjit", "Slinky", "PjRt", "ParseArg", "DevicePut", "Handle")


def _op_metadata(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> its ``op_name`` metadata."""
    meta = {}
    pat = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = \S+ .*?metadata=\{op_name=\"([^\"]*)\"")
    for line in hlo_text.splitlines():
        m = pat.match(line)
        if m:
            meta[m.group(1)] = m.group(2)
    return meta


def _block(op_name: str) -> str:
    depth = op_name.count("transpose(")
    side = ("fwd", "bwd", "bwd2")[min(depth, 2)]
    mods = re.findall(r"(interaction_\d+|product_\d+|\w*readout\w*|uee_\w+|uie)", op_name)
    return f"{side} {mods[0] if mods else 'other'}"


def _train_grad(pot, batch: int):
    """Jitted ``(params, graph, labels) -> grads`` of compare_mlip.py's E+F loss, and its args."""
    import jax
    from compare_mlip import _ef_loss, _labels, _train_batch

    from tace_jax.properties import compute_properties

    frames, energies, forces = _train_batch(batch, 0)
    graph = jax.device_put(pot.graph_from_atoms(frames))
    labels = _labels(energies, forces, graph.num_graphs, graph.num_nodes, len(frames[0]))

    def loss(params, graph, labels):
        variables = {**pot.variables, "params": params}
        out = compute_properties(pot.apply_fn, variables, graph, ("energy", "forces"), True)
        return _ef_loss(out["energy"], out["forces"], labels)

    return jax.jit(jax.grad(loss)), (pot.variables["params"], graph, labels)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--system", default="aspirin", help="aspirin, water (192) or si (1440)")
    p.add_argument("--calls", type=int, default=20, help="traced calls")
    p.add_argument("--top", type=int, default=15, help="largest single ops to list")
    p.add_argument(
        "--train",
        type=int,
        default=0,
        metavar="B",
        help="profile the parameter gradient of an E+F loss on B displaced copies of aspirin "
        "(the training step of compare_mlip.py, without the optimiser) instead of E+F",
    )
    a = p.parse_args(argv)
    import jax
    import numpy as np

    sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    from bench_model import build_system
    from compare_mlip import _tace_potential

    pot = _tace_potential()  # TACEConfig() defaults, elements H C O Si, random weights
    if a.train:
        fn, args = _train_grad(pot, a.train)
        graph = args[1]
    else:
        graph = jax.device_put(pot.graph_from_atoms(build_system(a.system)))
        pot.compute(graph)  # compiles the one jitted function
        (fn,) = pot.predictor._fns.values()
        args = (pot.inference_variables(), graph)  # what Potential.compute passes
    call = lambda: jax.block_until_ready(fn(*args))  # noqa: E731
    call()
    wall = []
    for _ in range(a.calls):
        t0 = time.perf_counter()
        call()
        wall.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(a.calls):
                call()
        (trace,) = glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)
        with gzip.open(trace) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    dur, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not any(h in e["name"] for h in _HOST_EVENTS):
            dur[e["name"]] += e.get("dur", 0.0)
            count[e["name"]] += 1
    meta = _op_metadata(fn.lower(*args).compile().as_text())
    blocks, n_ops, total = collections.Counter(), 0, 0.0
    for name, us in dur.items():
        if name.startswith("while") or name not in meta:
            continue
        blocks[_block(meta[name])] += us
        n_ops += count[name]
        total += us
    n = a.calls
    what = f"train {a.train} x aspirin" if a.train else a.system
    print(
        f"{what}: {graph.budgets} (nodes, edges, graphs) padded; wall "
        f"{1e3 * np.median(wall):.2f} ms median of {n}; summed op time "
        f"{total / n / 1e3:.2f} ms/call, {n_ops / n:.0f} ops/call"
    )
    print("\n| block | ms/call | share |\n|---|---|---|")
    for k, us in blocks.most_common():
        print(f"| {k} | {us / n / 1e3:.2f} | {100 * us / total:.0f} % |")
    print("\nlargest ops (us/call, executions/call, op_name):")
    named = [(us, k) for k, us in dur.items() if k in meta and not k.startswith("while")]
    for us, k in sorted(named, reverse=True)[: a.top]:
        print(f"  {us / n:8.1f} {count[k] // n:3d}  {k:28s} {meta[k][-90:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
