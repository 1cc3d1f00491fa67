"""BaTiO3 and SiO2 electric-response benchmark (issue 10, Build 5).

Field models (``model.equivariant_embeddings: [electric_field]``) trained on energy, forces,
stress, polarization P = −∂E/∂ℰ (quantum-folded), Born charges Z* = ∂P/∂x and the conservative
polarizability α = ∂P/∂ℰ (docs/theory.md §2.5, §3; arXiv 2509.14961), on the allegro-pol data
in ``/work/shared/data/batio3_sio2_electric_response`` (see its PROVENANCE.md for units).

Steps (run in order from the repository root)::

    python benchmarks/batio3_sio2_response.py prep   [--work DIR]
    python benchmarks/batio3_sio2_response.py train  [--work DIR] [--which batio3|sio2|both]
    python benchmarks/batio3_sio2_response.py report [--work DIR]

``prep`` writes the BaTiO3 test file (the 14 frames of the 73-frame file with
``original_dataset_index`` 59–72, converted to the key names of ``BaTiO3.xyz``) and a fixed-seed
random 161/20/20 split of SiO2.xyz (allegro-pol key names kept). ``train`` runs
``tace-jax train`` with the shipped configs ``tace_jax/configs/batio3_response.yaml`` and
``sio2_response.yaml`` (``nice -n 5``, a ``max_time`` budget each). ``report`` runs
``tace-jax spectrum`` (IR, MD and harmonic) on the trained BaTiO3 model and writes
``benchmarks/results/batio3_sio2_response.{md,json}`` and the spectrum PNG/CSV/JSON.
Data and runs stay under ``--work`` (default ``runs/batio3_sio2_response``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path("/work/shared/data/batio3_sio2_electric_response")
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = ROOT / "tace_jax" / "configs"
SPLIT_SEED = 0
SIO2_SPLIT = (161, 20, 20)
# training budgets, minutes of wall time on the shared CPU (max_time= of tace-jax train)
BUDGET_MIN = {"batio3": 24.0, "sio2": 19.0}


def _read(path):
    from ase.io import read

    return read(str(path), index=":")


def _write(path, frames) -> None:
    from ase.io import write

    write(str(path), frames, format="extxyz")


def _to_tace_keys(atoms):
    """Copy of an allegro-pol frame with the key names of BaTiO3.xyz (and ℰ = 0)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    new = atoms.copy()
    res = dict(atoms.calc.results) if atoms.calc is not None else {}
    res["energy"] = float(atoms.info["total_energy"])
    res["born_effective_charges"] = np.asarray(atoms.arrays["born_charge"]).reshape(-1, 9)
    for k in ("total_energy",):
        new.info.pop(k, None)
    new.arrays.pop("born_charge", None)
    new.info["electric_field"] = np.zeros(3)
    new.calc = SinglePointCalculator(new, **res)
    return new


def prep(work: pathlib.Path) -> None:
    """Write the BaTiO3 test file and the SiO2 split under ``work/data``."""
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    full = _read(DATA / "BaTiO3_allegro-pol_73frames.xyz.xz")
    train = _read(DATA / "BaTiO3.xyz.xz")
    idx = [int(a.info["original_dataset_index"]) for a in full]
    test = [_to_tace_keys(a) for a, i in zip(full, idx) if 59 <= i <= 72]
    e_train = {round(a.get_potential_energy(), 6) for a in train}
    test_e = [round(a.get_potential_energy(), 6) for a in test]
    overlap = sum(e in e_train for e in test_e)
    if len(test) != 14 or overlap:
        raise RuntimeError(f"BaTiO3 test: {len(test)} frames, {overlap} also in BaTiO3.xyz")
    _write(out / "batio3_test.xyz", test)
    sio2 = _read(DATA / "SiO2.xyz.xz")
    n_tr, n_va, n_te = SIO2_SPLIT
    if len(sio2) != n_tr + n_va + n_te:
        raise RuntimeError(f"SiO2.xyz: {len(sio2)} frames, expected {sum(SIO2_SPLIT)}")
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(sio2))
    parts = {
        "train": perm[:n_tr],
        "valid": perm[n_tr : n_tr + n_va],
        "test": perm[n_tr + n_va :],
    }
    for name, ids in parts.items():
        _write(out / f"sio2_{name}.xyz", [sio2[i] for i in sorted(ids)])
    split = {
        "batio3": {
            "train": "BaTiO3.xyz (59 frames, valid_fraction of the config split off)",
            "test_original_dataset_index": [int(a.info["original_dataset_index"]) for a in test],
        },
        "sio2": {
            "seed": SPLIT_SEED,
            **{k: sorted(int(i) for i in v) for k, v in parts.items()},
        },
    }
    (out / "split.json").write_text(json.dumps(split, indent=1))
    print(f"prep: {len(test)} BaTiO3 test frames, SiO2 split {SIO2_SPLIT} -> {out}")


def _train_args(which: str, work: pathlib.Path) -> list[str]:
    data = work / "data"
    run = work / which
    common = [f"output_dir={run}", f"max_time={BUDGET_MIN[which] * 60:.0f}", "progress=false"]
    if which == "batio3":
        return [
            str(CONFIGS / "batio3_response.yaml"),
            f"test_file={data / 'batio3_test.xyz'}",
            *common,
        ]
    return [
        str(CONFIGS / "sio2_response.yaml"),
        f"train_file={data / 'sio2_train.xyz'}",
        f"valid_file={data / 'sio2_valid.xyz'}",
        f"test_file={data / 'sio2_test.xyz'}",
        *common,
    ]


def train(work: pathlib.Path, which: str, extra: list[str]) -> None:
    """Train the chosen model(s), one after the other, with ``nice -n 5``."""
    for name in ("batio3", "sio2") if which == "both" else (which,):
        cmd = ["nice", "-n", "5", sys.executable, "-m", "tace_jax.cli.main", "train"]
        cmd += _train_args(name, work) + list(extra)
        print("$", " ".join(cmd), flush=True)
        t0 = time.time()
        log = work / f"{name}_train.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        wall = time.time() - t0
        (work / f"{name}_wall.json").write_text(json.dumps({"wall_s": wall, "rc": rc}))
        print(f"{name}: rc={rc}, wall {wall / 60:.1f} min, log {log}", flush=True)
        if rc:
            raise SystemExit(rc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("prep", "train", "report"))
    p.add_argument("--work", default=str(ROOT / "runs" / "batio3_sio2_response"))
    p.add_argument("--which", default="both", choices=("batio3", "sio2", "both"))
    p.add_argument("overrides", nargs="*", help="extra key=value for tace-jax train")
    args = p.parse_args(argv)
    work = pathlib.Path(args.work).resolve()
    if args.step == "prep":
        prep(work)
    elif args.step == "train":
        train(work, args.which, args.overrides)
    else:
        report(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
