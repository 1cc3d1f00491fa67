"""Real-data comparison of TACE with and without Latent Ewald Summation (arXiv 2509.14961,
docs/theory.md §4), trained with the CLI on small subsets at the same budget.

Steps (run from the repository root; ``runs/`` is git-ignored)::

    python benchmarks/les_real_data.py prep      # derived data files in runs/les_data
    python benchmarks/les_real_data.py train     # 8 CLI runs: les_*.yaml, model.les=false/true
    python benchmarks/les_real_data.py report    # -> benchmarks/results/les_real_data.md
    python benchmarks/les_binding_curves.py      # -> benchmarks/results/les_binding_tails.png

``prep`` writes (all from ``/work/shared/data``, see each PROVENANCE.md):

* ``dimers_{train,test}.xyz``: the LODE dimers (``les_small_long_range/lode_dimers``), the dummy
  30 Å box removed (``pbc`` False, no cell: isolated dimers). Train: the 10 training separations
  of each of the 6 pairs plus, energy-only, the two isolated monomers of each pair (``energyA``,
  ``energyB`` of the file, the monomer geometry of the dimer), so that the binding energy
  ``E(AB) − E(A) − E(B)`` is defined for the model. Test: the 3 largest separations (the tail).
* ``au2mgo_{train,test}.xyz``: the 4 DFT-optimised Au2/MgO(Al) slabs; train 1-doped, 3-doped,
  1-undoped; test 3-undoped.
* ``water_{train,valid,test}.xyz``: the 50 RPBE-D3 frames of ``water_rpbe_d3_les``: 35/5/10.
* ``spice_{train,valid,test}.xyz``: SPICE dipeptides, first 150 train, 20 val, 50 test frames
  (``force`` stored as ``forces``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("TACE_SHARED_DATA", "/work/shared/data"))
OUT = Path("runs/les_data")
RUNS = Path("runs")
RESULTS = Path(__file__).resolve().parent / "results"
PAIRS = (0, 2, 3, 4, 5, 6)


def _isolated(atoms, energy=None, forces=None):
    """A non-periodic copy (no cell) with only energy (and forces) as labels."""
    import ase
    from ase.calculators.singlepoint import SinglePointCalculator

    pos = atoms.get_positions()
    if atoms.pbc.any():  # the dimers must not straddle the dummy box
        cell = atoms.cell.array
        frac = np.linalg.solve(cell.T, (pos - pos.mean(0)).T).T
        if np.abs(frac).max() > 0.45:
            raise ValueError(f"{atoms.info.get('label')}: structure wraps around the box")
    new = ase.Atoms(atoms.get_atomic_numbers(), positions=pos, pbc=False)
    for k in ("distance", "inter_energy", "label", "dimer_id", "indexB", "energyA", "energyB"):
        if k in atoms.info:
            new.info[k] = atoms.info[k]
    res = {"energy": float(energy)}
    if forces is not None:
        res["forces"] = np.asarray(forces)
    new.calc = SinglePointCalculator(new, **res)
    return new


def prep_dimers(out: Path) -> None:
    from ase.io import read, write

    root = DATA / "les_small_long_range" / "lode_dimers"
    train, test = [], []
    for i in PAIRS:
        tr = read(root / f"train-id{i}.xyz", ":")
        te = read(root / f"test-id{i}.xyz", ":")
        for a in tr:
            train.append(_isolated(a, a.get_potential_energy(), a.get_forces()))
        for a in te:
            test.append(_isolated(a, a.get_potential_energy(), a.get_forces()))
        a, b = tr[0], int(tr[0].info["indexB"])
        for part, key in ((a[:b], "energyA"), (a[b:], "energyB")):
            mono = _isolated(part, a.info[key])
            mono.info = {"label": f"{a.info['label']}-{key[-1]}", "dimer_id": i}
            train.append(mono)
    write(out / "dimers_train.xyz", train, format="extxyz")
    write(out / "dimers_test.xyz", test, format="extxyz")


def prep_au2mgo(out: Path) -> None:
    from ase.io import read, write

    root = DATA / "les_small_long_range" / "au2_mgo_dft_optimized"
    frames = {n: read(root / f"{n}.xyz") for n in ("1-doped", "3-doped", "1-undoped", "3-undoped")}
    keep = []
    for name, a in frames.items():
        a.info["name"] = name
        a.arrays["ref_charges"] = a.calc.results["charges"]
        from ase.calculators.singlepoint import SinglePointCalculator

        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        keep.append(a)
    write(out / "au2mgo_train.xyz", keep[:3], format="extxyz")
    write(out / "au2mgo_test.xyz", keep[3:], format="extxyz")


def prep_water_spice(out: Path) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write

    w = read(DATA / "water_rpbe_d3_les" / "test-H2O_RPBE-D3.xyz.xz", ":")
    write(out / "water_train.xyz", w[:35], format="extxyz")
    write(out / "water_valid.xyz", w[35:40], format="extxyz")
    write(out / "water_test.xyz", w[40:], format="extxyz")
    root = DATA / "spice_dipeptides_les"
    for split, sel in (("train", slice(0, 150)), ("val", slice(0, 20)), ("test", slice(0, 50))):
        frames = read(root / f"spice-dipep-dipolar_{split}.xyz.xz", sel)
        clean = []
        for a in frames:
            e, f = a.get_potential_energy(), a.arrays["force"]
            b = a.copy()
            for k in list(b.arrays):
                if k not in ("numbers", "positions"):
                    del b.arrays[k]
            b.info = {}
            b.calc = SinglePointCalculator(b, energy=e, forces=f)
            clean.append(b)
        name = {"val": "valid"}.get(split, split)
        write(out / f"spice_{name}.xyz", clean, format="extxyz")


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _errors(pot, frames) -> dict:
    e_err, f_err, n_at = [], [], []
    for a in frames:
        out = pot.predict(a, properties=("energy", "forces"))
        e_err.append(float(out["energy"]) - a.get_potential_energy())
        f_err.append(np.asarray(out["forces"]) - a.get_forces())
        n_at.append(len(a))
    e_err, n_at = np.array(e_err), np.array(n_at)
    f = np.concatenate([x.ravel() for x in f_err])
    return {
        "E_mae_meV_atom": 1e3 * float(np.mean(np.abs(e_err / n_at))),
        "E_rmse_meV_atom": 1e3 * float(np.sqrt(np.mean((e_err / n_at) ** 2))),
        "F_mae_meV_A": 1e3 * float(np.mean(np.abs(f))),
        "F_rmse_meV_A": 1e3 * float(np.sqrt(np.mean(f**2))),
    }


def _bec_compare(pot) -> dict:
    """LES Born charges of the water model on liquid water (APT) and 2 g/cc superionic water."""
    from ase.io import read

    res = {}
    sets = {
        "water_apt test (384 at., 10 fr.)": (
            read(DATA / "water_apt" / "liquid_water_apt_test.extxyz.xz", ":"),
            "apt",
        ),
        "superionic 2 g/cc 2000 K (162 at., 5 fr.)": (
            read(DATA / "superionic_water_bec" / "S-2cc-T2000K-BEC.xyz.xz", ":5"),
            "BEC",
        ),
    }
    for name, (frames, key) in sets.items():
        pred, ref, z = [], [], []
        for a in frames:
            out = pot.predict(a, properties=("les_born_effective_charges",))
            pred.append(np.asarray(out["les_born_effective_charges"]).reshape(-1, 3, 3))
            ref.append(np.asarray(a.arrays[key]).reshape(-1, 3, 3))
            z.append(a.get_atomic_numbers())
        pred, ref, z = np.concatenate(pred), np.concatenate(ref), np.concatenate(z)
        row = {"rmse": float(np.sqrt(np.mean((pred - ref) ** 2))),
               "rmse_transposed": float(np.sqrt(np.mean((np.swapaxes(pred, 1, 2) - ref) ** 2))),
               "rms_ref": float(np.sqrt(np.mean(ref**2))),
               "corr": float(np.corrcoef(pred.ravel(), ref.ravel())[0, 1])}  # fmt: skip
        for el, zz in (("H", 1), ("O", 8)):
            m = z == zz
            row[f"tr3_{el}_pred"] = float(np.trace(pred[m], axis1=1, axis2=2).mean() / 3)
            row[f"tr3_{el}_ref"] = float(np.trace(ref[m], axis1=1, axis2=2).mean() / 3)
        # the best isotropic per-species constant (a reference point for the rmse)
        iso = np.zeros_like(ref)
        for zz in (1, 8):
            iso[z == zz] = np.eye(3) * np.trace(ref[z == zz], axis1=1, axis2=2).mean() / 3
        row["rmse_iso_const"] = float(np.sqrt(np.mean((iso - ref) ** 2)))
        res[name] = row
    return res


def report() -> None:
    from ase.io import read

    from tace_jax.inference import Potential

    lines = ["# TACE with and without LES on real data (small budgets, CPU)", ""]
    lines += ["Errors on the held-out test frames (predicted with the exported EMA model).", ""]
    lines += ["| data | model | steps | train wall s | E MAE meV/at | E RMSE meV/at "
              "| F MAE meV/Å | F RMSE meV/Å |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    summary = {}
    for ds in ("dimers", "au2mgo", "water", "spice"):
        test = read(OUT / f"{ds}_test.xyz", ":")
        for variant in ("sr", "les"):
            run = RUNS / f"les_{ds}_{variant}"
            model, done = run / "model", run / "les_wall.json"  # written by `train` at the end
            info = json.loads(done.read_text()) if done.exists() else {}
            if info.get("rc") != 0 or not model.exists():
                print(f"no finished run in {run}", file=sys.stderr)
                continue
            cache = run / "les_eval.json"  # errors of this model (recomputed when retrained)
            if cache.exists() and cache.stat().st_mtime > done.stat().st_mtime:
                err = json.loads(cache.read_text())
            else:
                pot = Potential.load(model)
                err = _errors(pot, test)
                if ds == "water" and variant == "les":
                    err["bec"] = _bec_compare(pot)
                cache.write_text(json.dumps(err))
            summary[f"{ds}_{variant}"] = {**{k: v for k, v in err.items() if k != "bec"}, **info}
            lines.append(
                f"| {ds} | {'LES' if variant == 'les' else 'short-range'} | "
                f"{info.get('steps', '?')} | {info.get('wall_s', float('nan')):.0f} | "
                f"{err['E_mae_meV_atom']:.2f} | {err['E_rmse_meV_atom']:.2f} | "
                f"{err['F_mae_meV_A']:.1f} | {err['F_rmse_meV_A']:.1f} |"
            )
            if "bec" in err:
                summary["bec"] = err.pop("bec")
    if "bec" in summary:
        lines += ["", "## LES Born effective charges of the water model (no BEC in training)", ""]
        lines += ["| set | RMSE e | RMS ref e | RMSE of best iso. constant e | corr | "
                  "tr/3 H pred/ref | tr/3 O pred/ref |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, r in summary["bec"].items():
            lines.append(
                f"| {name} | {r['rmse']:.3f} | {r['rms_ref']:.3f} | {r['rmse_iso_const']:.3f} "
                f"| {r['corr']:.2f} | {r['tr3_H_pred']:.2f} / {r['tr3_H_ref']:.2f} "
                f"| {r['tr3_O_pred']:.2f} / {r['tr3_O_ref']:.2f} |"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "les_real_data.json").write_text(json.dumps(summary, indent=1))
    text = "\n".join(lines) + "\n"
    md = RESULTS / "les_real_data.md"
    head = md.read_text().split("<!-- table -->")[0] if md.exists() else ""
    md.write_text(head + "<!-- table -->\n" + text if head else text)
    print(text)


def train(names, overrides=()) -> None:
    """Train every config twice with the CLI (``model.les=false`` / ``true``), niced, one run
    at a time; writes ``runs/les_<name>_<variant>/les_wall.json`` (wall time, steps)."""
    import re
    import subprocess

    for name in names:
        for variant, les in (("sr", "false"), ("les", "true")):
            run = RUNS / f"les_{name}_{variant}"
            cmd = ["nice", "-n", "5", "tace-jax", "train", f"tace_jax/configs/les_{name}.yaml",
                   f"output_dir={run}", f"model.les={les}", "--fresh", *overrides]  # fmt: skip
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            wall = time.perf_counter() - t0
            run.mkdir(parents=True, exist_ok=True)
            (run / "les_train.log").write_text(proc.stdout + proc.stderr)
            m = re.search(r"after (\d+) steps, ([\d.]+) s", proc.stdout + proc.stderr)
            info = {"command": " ".join(cmd[3:]), "wall_s": wall, "rc": proc.returncode,
                    "pythonpath": os.environ.get("PYTHONPATH", ""),
                    "steps": int(m.group(1)) if m else None,
                    "train_s": float(m.group(2)) if m else None}  # fmt: skip
            (run / "les_wall.json").write_text(json.dumps(info))
            print(json.dumps(info), flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prep", "train", "report"))
    ap.add_argument("--sets", default="dimers,au2mgo,water,spice")
    ap.add_argument("--override", action="append", default=[], help="key=value for train")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.step == "prep":
        OUT.mkdir(parents=True, exist_ok=True)
        prep_dimers(OUT)
        prep_au2mgo(OUT)
        prep_water_spice(OUT)
        print(f"wrote {sorted(p.name for p in OUT.iterdir())} in {time.perf_counter() - t0:.1f}s")
    elif args.step == "train":
        train(args.sets.split(","), args.override)
    else:
        report()


if __name__ == "__main__":
    main()
