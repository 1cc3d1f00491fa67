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


SPECTRUM = {
    "png": RESULTS / "batio3_ir_spectrum.png",
    "csv": RESULTS / "batio3_ir_spectrum.csv",
    "json": RESULTS / "batio3_ir_spectrum.json",
}
SPECTRUM_ARGS = [
    "--method", "both", "--ir", "--relax", "--fmax", "0.01", "--steps", "2000",
    "--temperature", "30", "--timestep", "1.0", "--record-every", "2", "--width", "15",
    "--max-frequency", "1000", "--dtype", "float32", "--no-progress",
]  # fmt: skip
# (label, test_metrics.json key, factor to the reported unit)
COLUMNS = [
    ("E (meV/atom)", "energy_per_atom_mae", 1e3),
    ("F (meV/Å)", "forces_mae", 1e3),
    ("S (meV/Å³)", "stress_mae", 1e3),
    ("P (e·Å)", "polarization_mae", 1.0),
    ("α (e·Å²/V)", "conservative_polarizability_mae", 1.0),
]
ELEMENTS = {"batio3": ("Ba", "Ti", "O"), "sio2": ("Si", "O")}
ATOMS = {"batio3": 135, "sio2": 72}
ORDER = [c[0] for c in COLUMNS[:4]] + ["P/atom (me·Å)", COLUMNS[4][0], "Z* all (e)"]
ORDER += [f"Z* {el} (e)" for el in ("Ba", "Ti", "Si", "O")]


def _lowest_energy_frame(work: pathlib.Path) -> pathlib.Path:
    frames = _read(DATA / "BaTiO3.xyz.xz")
    k = int(np.argmin([a.get_potential_energy() for a in frames]))
    out = work / "data" / "batio3_lowest.xyz"
    _write(out, [frames[k]])
    return out


def spectrum(work: pathlib.Path) -> dict:
    """BaTiO3 IR (MD and harmonic) of the trained model from the lowest-energy training frame."""
    model = work / "batio3" / "model"
    start = _lowest_energy_frame(work)
    cmd = ["nice", "-n", "5", sys.executable, "-m", "tace_jax.cli.main", "spectrum"]
    cmd += [str(model), str(start), *SPECTRUM_ARGS]
    cmd += ["--png", str(SPECTRUM["png"]), "--csv", str(SPECTRUM["csv"])]
    cmd += ["--json", str(SPECTRUM["json"])]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    summary = json.loads(SPECTRUM["json"].read_text())
    summary["wall_s"] = round(time.time() - t0, 1)
    summary["start_structure"] = "lowest-energy frame of BaTiO3.xyz, BFGS-relaxed (fmax 0.01)"
    summary["settings"] = {
        k: v for k, v in summary["settings"].items() if k not in ("png", "csv", "json")
    }
    summary["settings"]["model"] = "<work>/batio3/model"
    summary["settings"]["structure"] = "<work>/data/batio3_lowest.xyz"
    SPECTRUM["json"].write_text(json.dumps(summary, indent=1))
    return summary


def _run_info(work: pathlib.Path, name: str) -> dict:
    run = work / name
    test = json.loads((run / "test_metrics.json").read_text())
    if test and all(isinstance(v, dict) for v in test.values()):  # {test file stem: metrics}
        test = next(iter(test.values()))
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    log = (run / "train.log").read_text()
    params = int(log.split(" parameters")[0].rsplit(" ", 1)[-1])
    wall = json.loads((work / f"{name}_wall.json").read_text())["wall_s"]
    cfg = (run / "config.yaml").read_text()
    return {"test": test, "steps": rows[-1]["step"], "epochs": rows[-1]["epoch"] + 1,
            "params": params, "wall_min": round(wall / 60, 1), "config": cfg}  # fmt: skip


def _errors(name: str, test: dict) -> dict:
    out = {}
    for label, key, f in COLUMNS:
        if key in test:
            out[label] = test[key] * f
    for el in ELEMENTS[name]:
        key = f"born_effective_charges_{el}_mae"
        if key in test:
            out[f"Z* {el} (e)"] = test[key]
    if "polarization_mae" in test:
        out["P/atom (me·Å)"] = test["polarization_mae"] * 1e3 / ATOMS[name]
    if "born_effective_charges_mae" in test:
        out["Z* all (e)"] = test["born_effective_charges_mae"]
    return out


def polarization_components(work: pathlib.Path) -> dict:
    """Folded P error per Cartesian component on the BaTiO3 test frames (trained model)."""
    from tace_jax.inference import Potential

    pot = Potential.load(work / "batio3" / "model")
    frames = _read(work / "data" / "batio3_test.xyz")
    preds = pot.predict(frames, ("polarization", "born_effective_charges"))
    rows = []
    for a, p in zip(frames, preds):
        cell = np.asarray(a.cell)
        d = np.asarray(p["polarization"]) - np.asarray(a.calc.results["polarization"])
        d = d - np.round(d @ np.linalg.inv(cell)) @ cell  # fold into e·R
        z_ref = np.asarray(a.calc.results["born_effective_charges"]).reshape(-1, 3, 3)
        z_err = float(np.abs(np.asarray(p["born_effective_charges"]) - z_ref).mean())
        idx = int(a.info["original_dataset_index"])
        rows.append({"index": idx, "P_error": d.round(3).tolist(), "Z_mae": round(z_err, 3)})
    err = np.array([r["P_error"] for r in rows])
    # diagnostic only: the errors folded with the quantum of one perovskite cell (cell / 3)
    unit = np.diag(np.asarray(frames[0].cell)) / 3.0
    err3 = err - np.round(err / unit) * unit
    return {
        "per_frame": rows,
        "unit_cell_quantum_xyz": unit.round(3).tolist(),
        "mae_xyz_folded_unit_cell": np.abs(err3).mean(0).round(3).tolist(),
        "mae_xyz": np.abs(err).mean(0).round(3).tolist(),
        "mean_xyz": err.mean(0).round(3).tolist(),
    }


def report(work: pathlib.Path, with_spectrum: bool = True) -> None:
    """Write benchmarks/results/batio3_sio2_response.{md,json} (+ the BaTiO3 IR spectrum)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = {n: _run_info(work, n) for n in ("batio3", "sio2") if (work / n / "model").exists()}
    spec = None
    if with_spectrum and "batio3" in runs:
        spec = spectrum(work)
    elif SPECTRUM["json"].exists():  # --no-spectrum: keep the spectrum of an earlier report
        spec = json.loads(SPECTRUM["json"].read_text())
    pcomp = polarization_components(work) if "batio3" in runs else None
    data = {
        n: {
            "test_mae": _errors(n, r["test"]),
            "test_metrics_raw": r["test"],
            "parameters": r["params"],
            "steps": r["steps"],
            "epochs": r["epochs"],
            "training_wall_min": r["wall_min"],
        }
        for n, r in runs.items()
    }
    data["hardware"] = "2 shared CPU cores (shared with other jobs; nice -n 5), float32"
    data["split"] = json.loads((work / "data" / "split.json").read_text())
    data["batio3_test_polarization_components"] = pcomp
    data["spectrum"] = spec and {k: spec[k] for k in ("peaks_cm", "wall_s", "start_structure")}
    (RESULTS / "batio3_sio2_response.json").write_text(json.dumps(data, indent=1))
    found = {k for n in runs for k in data[n]["test_mae"]}
    labels = [k for k in ORDER if k in found] + sorted(found - set(ORDER))
    head = "| system | " + " | ".join(labels) + " | params | steps | train wall | hardware |"
    lines = [head, "|" + "---|" * (len(labels) + 5)]
    for n in runs:
        e = data[n]["test_mae"]
        cells = [f"{e[k]:.3g}" if k in e else "–" for k in labels]
        r = data[n]
        lines.append(
            f"| {n} | " + " | ".join(cells) + f" | {r['parameters']} | {r['steps']} | "
            f"{r['training_wall_min']} min | 2 shared CPU cores |"
        )
    md = [
        "# BaTiO3 and SiO2 electric response (field models, issue 10 Build 5)",
        "",
        "Reproduce: `python benchmarks/batio3_sio2_response.py prep && ... train && ... report`",
        "(configs `tace_jax/configs/batio3_response.yaml`, `sio2_response.yaml`). Test-set MAE;",
        "P is the cell dipole (e·Å) folded into the quantum e·R; α is the conservative ∂P/∂ℰ.",
        "BaTiO3: train BaTiO3.xyz (59 frames, 10 % validation), test the 14 extra frames",
        "(original_dataset_index 59–72) of the 73-frame allegro-pol file. SiO2: random 161/20/20",
        f"split of SiO2.xyz (seed {SPLIT_SEED}).",
        "",
        *lines,
        "",
    ]
    if pcomp:
        md += [
            "BaTiO3 test P error by component (folded, e·Å): MAE x/y/z "
            + " / ".join(f"{v:.2f}" for v in pcomp["mae_xyz"])
            + ", mean "
            + " / ".join(f"{v:.2f}" for v in pcomp["mean_xyz"])
            + " (per frame in the json); folded with one perovskite cell's quantum (cell/3 = "
            + " / ".join(f"{v:.2f}" for v in pcomp["unit_cell_quantum_xyz"])
            + " e·Å, a diagnostic only) the MAE is "
            + " / ".join(f"{v:.2f}" for v in pcomp["mae_xyz_folded_unit_cell"])
            + ".",
            "",
        ]
    if spec:
        md += [
            "## BaTiO3 IR spectrum",
            "",
            f"![IR](batio3_ir_spectrum.png) — {spec['start_structure']}; MD: NVE "
            f"{spec['settings']['steps']} steps × {spec['settings']['timestep']} fs from "
            f"{spec['settings']['temperature']} K; harmonic: 405×405 Hessian, Lorentzian "
            f"{spec['settings']['width']} cm⁻¹. Peaks (cm⁻¹): "
            + "; ".join(
                f"{k}: " + ", ".join(f"{p:.0f}" for p in v) for k, v in spec["peaks_cm"].items()
            )  # fmt: skip
            + f". Wall {spec['wall_s']} s.",
            "",
        ]
    md += [NOTES, COMPARISON, ""]
    (RESULTS / "batio3_sio2_response.md").write_text("\n".join(md))
    print("\n".join(lines))
    print(f"report -> {RESULTS / 'batio3_sio2_response.md'}")


NOTES = """Notes. The BaTiO3 test frames spread wider than the training frames (E/atom std 57 vs 30
meV, stress std ~2x), so the BaTiO3 numbers are partly extrapolation. The BaTiO3 test P error is
almost all along z and nearly constant over the 14 frames (component line above), while Z* on
the same frames is good; its cause (model extrapolation, or a different Berry-phase reference
of the 14 extra frames) is not settled here. The MD IR curve (2 ps NVE from 30 K) is short and
not equilibrated: its lowest band (< 100 cm⁻¹) and the missing weight near 600 cm⁻¹ reflect
that; the harmonic peaks and the MD peaks near 150, 385 and 410 cm⁻¹ agree.
"""

COMPARISON = """## Comparison with allegro-pol (Falletta et al., Nat. Commun. 2025)

S. Falletta et al., "Unified differentiable learning of electric response", Nat. Commun. 16,
4031 (2025), doi:10.1038/s41467-025-59304-1 (preprint arXiv:2403.17207).

**Reported test errors: not found.** With the `search` tool (pages, docs and code corpora) only
the abstract of the paper was reachable (https://arxiv.org/html/2403.17207v1,
https://ar5iv.labs.arxiv.org/html/2403.17207,
https://ideas.repec.org/a/nat/natcom/v16y2025i1d10.1038_s41467-025-59304-1.html); the excerpts
returned do not include the error tables or the training-set sizes, and the allegro-pol README
(https://github.com/mir-group/allegro-pol) quotes none. No allegro-pol error is therefore
quoted here.

What the allegro-pol repository does show (`configs/tutorial.yaml`, commit 359bd30c39df):
the example BaTiO3 model splits `data/BaTiO3.xyz` (59 frames) 0.8/0.1/0.1 (seed 123), trains
an Allegro model with `l_max: 1`, 2 layers, 64 scalar / 32 tensor features, cutoff 5.0 Å,
EMA 0.999, Adam lr 1e-3, on a GPU (`accelerator: gpu`), with all loss coefficients 1 and
per-atom energy and per-atom polarization metrics (`per_atom_polarization_mae`). That is a
tutorial config, not necessarily the paper's production model.

Differences to keep in mind for any future comparison: our BaTiO3 test set is the 14 frames
*not* in BaTiO3.xyz (index 59–72 of the full parse), whose energies and stresses spread ~2x
wider than the training frames (extrapolation), not a random split; our SiO2 split is our own
random 161/20/20; our P error is per cell (135 or 72 atoms), not per atom (the P/atom column
divides by the atom count); our models are small (one layer) and trained for minutes on two
CPU cores shared with other jobs.
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("prep", "train", "report"))
    p.add_argument("--work", default=str(ROOT / "runs" / "batio3_sio2_response"))
    p.add_argument("--which", default="both", choices=("batio3", "sio2", "both"))
    p.add_argument("--no-spectrum", action="store_true", help="report: skip the IR spectrum")
    p.add_argument("overrides", nargs="*", help="extra key=value for tace-jax train")
    args = p.parse_args(argv)
    work = pathlib.Path(args.work).resolve()
    if args.step == "prep":
        prep(work)
    elif args.step == "train":
        train(work, args.which, args.overrides)
    else:
        report(work, with_spectrum=not args.no_spectrum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
