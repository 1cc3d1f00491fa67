"""rMD17 benchmark: train on 950 frames of ``train_01`` (50 more for validation), test on
``test_01`` (1000 frames), and print energy and force MAE (meV, meV/Å).

Usage::

    python benchmarks/rmd17.py --molecule ethanol --budget 1800          # 30 min CPU budget
    python benchmarks/rmd17.py --molecule aspirin --size paper --budget 0 # no time limit
    python benchmarks/rmd17.py --molecule uracil lr=0.005 patience=100    # extra config keys

Data: ``--data-dir`` (default ``$TACE_RMD17_DIR`` or ``/work/shared/data/rmd17``) holding the
``rmd17_<molecule>_{train,test}_01.npz`` files of andersx/rmd17-npz (kcal/mol → eV).

Protocol notes: the published numbers (MACE: ethanol 0.4 meV / 2.1 meV/Å) test on the rest of
the 100k-frame trajectory and train for days on a GPU; ``test_01`` is a 1000-frame stand-in and
a CPU budget of minutes gives much larger errors. Energies are O(10⁴) eV, so the default dtype
is float64 (float32 quantises total energies at the meV level).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

MOLECULES = (
    "aspirin",
    "azobenzene",
    "benzene",
    "ethanol",
    "malonaldehyde",
    "naphthalene",
    "paracetamol",
    "salicylic",
    "toluene",
    "uracil",
)

#: Model presets (TACEConfig fields); "paper" is the 2-layer ν = 3 configuration of the paper
#: (v0.0.7 hyperparameters, docs/theory.md §5.1 / §7.1).
SIZES = {
    "tiny": {
        "num_layers": 2,
        "correlation": 2,
        "num_channel": 16,
        "lmax_node": 1,
        "lmax_edge": 2,
        "radial_hidden": [32, 32],
        "readout_hidden": [16],
    },
    "small": {
        "num_layers": 2,
        "correlation": 3,
        "num_channel": 32,
        "lmax_node": 2,
        "lmax_edge": 2,
        "radial_hidden": [64, 64],
        "readout_hidden": [16],
    },
    "medium": {
        "num_layers": 2,
        "correlation": 3,
        "num_channel": 48,
        "lmax_node": 2,
        "lmax_edge": 3,
        "radial_hidden": [64, 64, 64],
        "readout_hidden": [16],
    },
    "paper": {
        "num_layers": 2,
        "correlation": 3,
        "num_channel": 64,
        "lmax_node": 2,
        "lmax_edge": 3,
        "radial_hidden": [64, 64, 64, 1024],
        "readout_hidden": [16],
    },
}

#: Published MACE rMD17 results (E meV, F meV/Å), docs/theory.md §6.3, for orientation.
MACE = {
    "aspirin": (2.2, 6.6),
    "azobenzene": (1.2, 3.0),
    "benzene": (0.4, 0.3),
    "ethanol": (0.4, 2.1),
    "malonaldehyde": (0.8, 4.1),
    "naphthalene": (0.5, 1.6),
    "paracetamol": (1.3, 4.8),
    "salicylic": (0.9, 3.1),
    "toluene": (0.5, 1.5),
    "uracil": (0.5, 2.1),
}


def default_data_dir() -> str:
    return os.environ.get("TACE_RMD17_DIR", "/work/shared/data/rmd17")


def build_config(args) -> dict:
    """The training config of one benchmark run."""
    data = Path(args.data_dir)
    train = data / f"rmd17_{args.molecule}_train_01.npz"
    test = data / f"rmd17_{args.molecule}_test_01.npz"
    for f in (train, test):
        if not f.exists():
            raise SystemExit(f"rmd17.py: {f} not found (set --data-dir or TACE_RMD17_DIR)")
    model = {"cutoff": args.cutoff, "zbl": False, **SIZES[args.size]}
    return {
        "train_file": str(train),
        "test_file": str(test),
        "valid_fraction": 0.05,  # 950 / 50
        "model": model,
        "e0s": "least_squares",
        "scale_type": "rms_forces",
        "shift_type": "mean_delta_energy_per_atom",
        "batch_size": args.batch_size,
        "max_epochs": args.epochs,
        "max_time": args.budget if args.budget > 0 else None,
        "lr": args.lr,
        "amsgrad": True,
        "weight_decay": 0.0,
        "clip": 10.0,
        "energy_weight": 1.0,
        "forces_weight": args.forces_weight,
        "ema_decay": 0.99,
        "scheduler": "plateau",
        "plateau_factor": 0.8,
        "plateau_patience": args.plateau_patience,
        "min_lr": 1e-5,
        "patience": None,
        "checkpoint_every": 2000,
        "dtype": args.dtype,
        "seed": args.seed,
        "output_dir": args.output_dir or f"runs/rmd17_{args.molecule}_{args.size}",
        "progress": args.progress,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--molecule", default="ethanol", choices=MOLECULES)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--size", default="small", choices=tuple(SIZES))
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument(
        "--budget", type=float, default=1800.0, help="training time in seconds (0: no limit)"
    )
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--forces-weight", type=float, default=10.0)
    p.add_argument("--plateau-patience", type=int, default=10)
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default=None)
    p.add_argument("--progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="extra config keys, key=value")
    args = p.parse_intermixed_args(argv)

    from tace_jax.train import config_from_dict, fit
    from tace_jax.train.config import apply_overrides

    cfg = config_from_dict(apply_overrides(build_config(args), args.overrides))
    t0 = time.time()
    result = fit(cfg)
    test = next(iter(result.test_metrics.values()))
    e, f = 1e3 * test["energy_mae"], 1e3 * test["forces_mae"]
    summary = {
        "molecule": args.molecule,
        "size": args.size,
        "dtype": cfg.dtype,
        "budget_s": cfg.max_time,
        "wall_s": round(time.time() - t0, 1),
        "steps": result.steps,
        "epochs": result.epochs,
        "stop_reason": result.stop_reason,
        "n_params": int(result.potential.num_params),
        "energy_mae_meV": round(e, 3),
        "forces_mae_meV_per_A": round(f, 3),
        "energy_rmse_meV": round(1e3 * test["energy_rmse"], 3),
        "forces_rmse_meV_per_A": round(1e3 * test["forces_rmse"], 3),
        "mace_reference": MACE[args.molecule],
    }
    (Path(cfg.output_dir) / "benchmark.json").write_text(json.dumps(summary, indent=1))
    print(
        f"rMD17 {args.molecule} ({args.size}, {cfg.dtype}, budget {cfg.max_time} s, "
        f"{result.steps} steps): E MAE {e:.2f} meV, F MAE {f:.2f} meV/Å "
        f"(MACE: {MACE[args.molecule][0]} / {MACE[args.molecule][1]})"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
