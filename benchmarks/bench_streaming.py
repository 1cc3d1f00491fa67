"""Host memory of streaming (``train_dir``) versus in-memory training (issue 12, build 5).

Data: the 50 RPBE-D3 water boxes (192 atoms, /work/shared/data/water_rpbe_d3_les) replicated
``--replicas`` times, each replica jittered by 1e-3 Å (distinct arrays, distinct neighbour
lists). Every run trains the same tiny model for ``--steps`` steps in its own process, which
samples its RSS every 10 ms (and reads the kernel's ``ru_maxrss`` at the end):

1. ``baseline``: in memory, ``--baseline-replicas`` replicas (same batch shapes and steps)
   -> peak RSS B (JAX, XLA, model, compiled steps, small data);
2. ``memory``: in memory, all replicas (the structures and neighbour lists held);
3. ``stream-global``: from shards, ``shuffle: global`` (the in-memory batch order), under the
   cap ``B + --allowance-mib``: a run that crosses it is killed;
4. ``stream-buffer``: from shards, shuffle buffer + budget-driven batching (``edge_budget``),
   under the same cap.

It prints the peak RSS of each run, the data size against the cap allowance, the final
validation metrics, and the parameter difference between ``memory`` and ``stream-global``.

    python benchmarks/bench_streaming.py --replicas 120 --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

WATER = "/work/shared/data/water_rpbe_d3_les/test-H2O_RPBE-D3.xyz.xz"
MODEL = {
    "cutoff": 4.0,
    "num_layers": 1,
    "correlation": 2,
    "num_channel": 8,
    "lmax_node": 1,
    "lmax_edge": 1,
    "radial_hidden": [16],
    "readout_hidden": [8],
    "zbl": False,
}


def replicas(n: int):
    """The water frames, replica by replica (deterministic jitter per replica)."""
    from tace_jax.data import read_structures

    frames = read_structures(WATER)
    for r in range(n):
        rng = np.random.default_rng([r])
        yield [
            s.replace(
                positions=s.positions + rng.normal(scale=1e-3, size=s.positions.shape),
                source=(f"water_x{r}.xyz", k),
            )
            for k, s in enumerate(frames)
        ]


def config(out: Path, steps: int, **kw) -> dict:
    return {
        "model": MODEL,
        "valid_fraction": 0.02,
        "batch_size": 2,
        "valid_batch_size": 8,
        "max_steps": steps,
        "max_epochs": 1,
        "lr": 0.01,
        "forces_weight": 10.0,
        "scale_type": "rms_forces",
        "e0s": {1: -2.0, 8: -10.58},  # ~ -14.58 eV per H2O; least squares would SVD [S, S]
        "dtype": "float32",
        "output_dir": str(out),
        "progress": False,
        "resume": False,
        "seed": 0,
        **kw,
    }


class Monitor:
    """Peak RSS of this process, sampled every 10 ms; exits when it crosses ``cap`` bytes."""

    def __init__(self, cap: float | None, name: str = ""):
        import psutil

        self.proc, self.cap, self.peak, self.name = psutil.Process(), cap, 0, name
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            rss = self.proc.memory_info().rss
            self.peak = max(self.peak, rss)
            if self.cap is not None and rss > self.cap:
                print(
                    json.dumps({"run": self.name, "killed": True, "rss_mib": rss / 2**20}),
                    flush=True,
                )
                os._exit(9)
            time.sleep(0.01)


def child(args) -> None:
    mon = Monitor(args.cap_mib * 2**20 if args.cap_mib else None, args.child)
    import jax

    from tace_jax.data import random_split
    from tace_jax.train import fit
    from tace_jax.train.prepare import TrainingData

    work, t0 = Path(args.workdir), time.time()
    out = work / f"run_{args.child}"
    if args.child in ("baseline", "memory"):
        n = args.baseline_replicas if args.child == "baseline" else args.replicas
        data = [s for rep in replicas(n) for s in rep]
        tr, va = random_split(len(data), 0.02, 0)
        td = TrainingData([data[i] for i in tr], [data[i] for i in va], {})
        del data
        res = fit(config(out, args.steps), data=td)
    else:
        stream = {"shuffle": "global"}
        if args.child == "stream-buffer":
            stream = {"shuffle": "buffer", "buffer_size": 64, "edge_budget": 12000}
        res = fit(config(out, args.steps, train_dir=str(work / "shards"), stream_options=stream))
    params = jax.tree.leaves(jax.device_get(res.state.params))
    np.savez(work / f"params_{args.child}.npz", *params)
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    stats = json.loads((out / "statistics.json").read_text())
    print(json.dumps({
        "run": args.child, "peak_rss_mib": round(max(mon.peak / 2**20, ru), 1),
        "steps": res.steps, "train_structures": stats["num_structures"][0],
        "valid": {k: res.valid_metrics[k] for k in sorted(res.valid_metrics)},
        "log": stats.get("streaming", []), "time_s": round(time.time() - t0, 1),
    }), flush=True)  # fmt: skip


def preprocess(work: Path, n: int) -> dict:
    """Shards of all replicas, written replica by replica (bounded memory)."""
    mon = Monitor(None)
    from tace_jax.data.shard_writer import ShardWriter

    t0 = time.time()
    w = ShardWriter(work / "shards", MODEL["cutoff"], shard_size=256)
    for rep in replicas(n):
        w.add(rep)
    m = w.close()
    size = sum(f.stat().st_size for f in (work / "shards").glob("*.h5"))
    return {
        "structures": m["num_structures"], "edges": m["num_edges"],
        "disk_mib": round(size / 2**20, 1), "time_s": round(time.time() - t0, 1),
        "peak_rss_mib": round(mon.peak / 2**20, 1),
    }  # fmt: skip


def run_child(args, mode: str, cap: float | None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--workdir", args.workdir]
    cmd += ["--replicas", str(args.replicas), "--steps", str(args.steps)]
    cmd += ["--baseline-replicas", str(args.baseline_replicas)]
    cached = Path(args.workdir) / f"result_{mode}.json"
    if args.reuse and cached.exists():
        return json.loads(cached.read_text())
    if cap:
        cmd += ["--cap-mib", str(cap)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{mode} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    out = {"rc": p.returncode, **json.loads(lines[-1])}
    cached.write_text(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=120)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--allowance-mib", type=float, default=100.0, help="cap = baseline + this")
    ap.add_argument("--workdir", default="/tmp/bench_streaming")
    ap.add_argument(
        "--baseline-replicas", type=int, default=10, help="in-memory baseline (same batch shapes)"
    )
    ap.add_argument("--reuse", action="store_true", help="reuse the shards and finished runs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cap-mib", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    work = Path(args.workdir)
    if work.exists() and not args.reuse:
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if args.reuse and (work / "preprocess.json").exists():
        pre = json.loads((work / "preprocess.json").read_text())
    else:
        pre = preprocess(work, args.replicas)
        (work / "preprocess.json").write_text(json.dumps(pre))
    print(f"preprocess: {json.dumps(pre)}", flush=True)
    base = run_child(args, "baseline", None)
    cap = base["peak_rss_mib"] + args.allowance_mib
    mem = run_child(args, "memory", None)
    runs = [base, mem] + [run_child(args, m, cap) for m in ("stream-global", "stream-buffer")]
    data_mib = mem["peak_rss_mib"] - base["peak_rss_mib"]
    print(
        f"\n{pre['structures']} structures ({pre['edges']} edges); in-memory data "
        f"{data_mib:.0f} MiB = {data_mib / args.allowance_mib:.1f}x the cap allowance; "
        f"cap = baseline {base['peak_rss_mib']:.0f} + {args.allowance_mib:.0f} = {cap:.0f} MiB"
    )
    print(
        f"{'run':14s} {'peak RSS MiB':>12s} {'under cap':>9s} {'steps':>5s} "
        f"{'valid E MAE':>11s} {'valid F MAE':>11s} {'valid loss':>10s} {'time s':>7s}"
    )
    for r in runs:
        if r.get("killed"):
            print(f"{r.get('run', '?'):14s} killed at {r['rss_mib']:.0f} MiB (over the cap)")
            continue
        v = r["valid"]
        e = v.get("energy_mae", v.get("energy_per_atom_mae", float("nan")))
        print(f"{r['run']:14s} {r['peak_rss_mib']:12.0f} {str(r['peak_rss_mib'] <= cap):>9s} "
              f"{r['steps']:5d} {e:11.4g} {v.get('forces_mae', float('nan')):11.4g} "
              f"{v['loss']:10.4g} {r['time_s']:7.1f}")  # fmt: skip
    for r in runs[2:]:
        for line in r.get("log", []):
            print(f"  [{r['run']}] {line}")
    a, b = np.load(work / "params_memory.npz"), np.load(work / "params_stream-global.npz")
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files)
    print(f"max |params(memory) - params(stream-global)| after {mem['steps']} steps: {diff:.3g}")


if __name__ == "__main__":
    main()
