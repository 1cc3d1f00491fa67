"""Training throughput (optimiser steps per second) of the default TACE model on rMD17 aspirin.

Trains ``tace_jax.train.fit`` for ``--epochs`` epochs of ``--frames`` frames (batch
``--batch-size``, float32, default model config as in ``bench_model.py``) and reports the
steps per second of the last epoch (the first ones hold the compilations); the per-epoch
validation on ``--valid`` frames is included in the time, as a user sees it.

Data: ``--data`` an rMD17 npz (``rmd17_aspirin_train_01.npz`` of andersx/rmd17-npz, kcal/mol
converted by the reader); without it (e.g. on a device machine that cannot reach the data
sets) the aspirin geometry of ``bench_model.py`` with random displacements and random labels
is used: the labels' values do not change the cost of a step.

Usage::

    python benchmarks/bench_train_step.py --data /work/shared/data/rmd17/rmd17_aspirin_train_01.npz
    python benchmarks/bench_train_step.py --frames 100 --epochs 3       # synthetic frames
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def synthetic_frames(n: int, seed: int = 0):
    import ase
    from ase.calculators.singlepoint import SinglePointCalculator

    sys.path.insert(0, HERE)
    from bench_model import build_system

    base = build_system("aspirin")
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        a = ase.Atoms(numbers=base.numbers, positions=base.positions)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        e = -17000.0 + rng.normal()
        f = rng.normal(scale=1.0, size=a.positions.shape)
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        frames.append(a)
    return frames


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="rMD17 npz (default: synthetic aspirin frames)")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--valid", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--epochs", type=int, default=4)
    a = p.parse_args(argv)
    import ase.io
    import jax

    from tace_jax.train import config_from_dict, fit

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "aspirin.extxyz")
        n = a.frames + a.valid
        if a.data:
            from tace_jax.data.readers import read_structures, structure_to_atoms

            frames = [structure_to_atoms(s) for s in read_structures(a.data)[:n]]
            source = os.path.basename(a.data)
        else:
            frames = synthetic_frames(n)
            source = "synthetic aspirin frames"
        ase.io.write(path, frames)
        extra = {"train_file": path, "valid_fraction": a.valid / n}
        cfg = config_from_dict(
            {
                **extra,
                "model": {},
                "batch_size": a.batch_size,
                "max_epochs": a.epochs,
                "dtype": "float32",
                "output_dir": os.path.join(tmp, "run"),
                "patience": 1000,
            }
        )
        t0 = time.perf_counter()
        fit(cfg)
        wall = time.perf_counter() - t0
        rows = [json.loads(x) for x in open(os.path.join(tmp, "run", "metrics.jsonl"))]
    rows = [r for r in rows if "epoch" in r and "time" in r]
    steps_per_epoch = -(-a.frames // a.batch_size)
    if len(rows) < 3:
        raise SystemExit("bench_train_step: needs --epochs >= 3 (the first two may compile)")
    dt = rows[-1]["time"] - rows[-2]["time"]  # the last epoch only: nothing left to compile
    n_steps = steps_per_epoch
    print(f"device: {jax.devices()[0]}, data: {source}, default TACE config, float32")
    print(f"epochs: {len(rows)}, steps/epoch ~{steps_per_epoch}, batch {a.batch_size}")
    print(f"first epoch (incl. compile): {rows[0]['time']:.1f} s; total fit: {wall:.1f} s")
    print(f"training steps/s (last epoch, incl. its validation): {n_steps / dt:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
