"""The README main job: train, evaluate and save a small TACE model on bundled data.

Run it with ``python -m tace_jax.main_job`` or ``tace-jax quickstart``. It

1. trains the model of ``tace_jax/configs/quickstart.yaml`` (2 layers, ν = 2, 16 channels) on
   950 frames of the bundled rMD17 ethanol split (50 more for validation) for ``--max-time``
   seconds (default 150 s; a few minutes in total on 2 CPU cores);
2. evaluates the best EMA model on the 200 bundled test frames and prints the energy MAE (meV)
   and force MAE (meV/Å) next to a trivial baseline (mean energy, zero forces);
3. saves the model to ``<output-dir>/model`` (load it with
   ``tace_jax.models.Potential.load``);
4. runs a short NVE molecular-dynamics demo with the trained model (``tace_jax.md.run_md``;
   skip with ``--no-md``).
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources

import numpy as np

__all__ = ["main", "quickstart_config_path", "trivial_baseline"]


def quickstart_config_path():
    """Path of the packaged ``quickstart.yaml``."""
    return resources.files("tace_jax") / "configs" / "quickstart.yaml"


def trivial_baseline(train, test) -> dict:
    """Errors of predicting the mean training energy and zero forces (eV, eV/Å)."""
    e_mean = np.mean([s.energy for s in train])
    e_err = np.array([s.energy - e_mean for s in test])
    f = np.concatenate([s.forces for s in test])
    return {"energy_mae": float(np.mean(np.abs(e_err))), "forces_mae": float(np.mean(np.abs(f)))}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tace-jax quickstart", description=__doc__.split("\n")[0])
    p.add_argument("--output-dir", default="runs/quickstart")
    p.add_argument(
        "--max-time", type=float, default=None, help="training seconds (default: the config's, 150)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir (default: start afresh)",
    )
    p.add_argument("--no-md", action="store_true", help="skip the MD demo")
    p.add_argument("--md-steps", type=int, default=200)
    p.add_argument("overrides", nargs="*", help="extra config overrides key=value")
    return p


def main(argv=None) -> int:
    args = _parser().parse_intermixed_args(argv)
    from tace_jax.train import fit, format_metrics, load_config
    from tace_jax.train.prepare import load_data

    t0 = time.time()
    overrides = [f"output_dir={args.output_dir}", *args.overrides]
    if args.max_time is not None:
        overrides.append(f"max_time={args.max_time}")
    overrides.append(f"resume={str(args.resume).lower()}")
    cfg = load_config(quickstart_config_path(), overrides)
    data = load_data(cfg)
    result = fit(cfg, data=data)
    test = next(iter(result.test_metrics.values()))
    base = trivial_baseline(data.train, next(iter(data.tests.values())))
    print()
    print("=" * 72)
    print(
        f"quickstart: {len(data.train)} train / {len(data.valid)} valid frames of rMD17 "
        f"ethanol, {result.steps} steps, {time.time() - t0:.0f} s for data, training and test"
    )
    print("test  " + format_metrics(test))
    print(
        f"test energy MAE: {1e3 * test['energy_mae']:.2f} meV   force MAE: "
        f"{1e3 * test['forces_mae']:.2f} meV/Å"
    )
    print(
        f"trivial baseline (mean energy, zero forces): energy MAE "
        f"{1e3 * base['energy_mae']:.1f} meV, force MAE {1e3 * base['forces_mae']:.1f} meV/Å"
    )
    print(f"model saved to {result.model_path}")
    if not args.no_md:
        from tace_jax.data import structure_to_atoms
        from tace_jax.md import run_md

        atoms = structure_to_atoms(data.tests[next(iter(data.tests))][0])
        atoms.calc = None
        steps = args.md_steps
        md = run_md(
            result.potential,
            atoms,
            steps,
            ensemble="nve",
            timestep=0.5,
            temperature=300.0,
            log_interval=max(1, steps // 20),
        )
        print(
            f"MD demo: {md['steps']} NVE steps, mean T {md['mean_temperature']:.0f} K, energy "
            f"drift {md['conserved_drift_ev_per_atom']:.2e} eV/atom, stable: {md['stable']}"
        )
    print("=" * 72)
    return 0


if __name__ == "__main__":
    sys.exit(main())
