"""``tace-jax eval MODEL DATA``: errors of a saved model on a data file, with a parity plot.

Example::

    tace-jax eval runs/tace/model test.xyz --out parity.png --json metrics.json
    tace-jax eval model.tace rmd17_ethanol_test_01.npz --index 0:200
    JAX_ENABLE_X64=1 tace-jax eval model64.tace test.xyz   # a float64 model needs 64-bit JAX

Prints MAE/RMSE of energy (total and per atom), forces (all and per element) and stress in
meV units; the optional parity plot shows predicted vs reference energy per atom, force
components and stress.

Response labels are compared with what the model predicts for them (docs/theory.md §3, §2.10):
``polarization`` with P = −∂E/∂ℰ of a field model (folded into the quantum e·R), ``dipole``
with P (field model) or the ``direct_dipole`` head, the ``polarizability`` with α = ∂P/∂ℰ
(field model) or ``direct_polarizability``, and the Born charges (``--born-charges-key``,
default ``born_effective_charges``) with Z* = ∂P/∂x (field model) or the LES charges' BECs,
per element too; ``--units`` converts a file's units on reading::

    tace-jax eval batio3_model BaTiO3_test.xyz           # E, F, S, P, Z*, α
    tace-jax eval water_tensors_model test.xyz --units "dipole=0.529177,polarizability=0.0102908"

Multi-fidelity models (docs/theory.md §2.8–2.9) predict every frame at its own level: its level key
(``--level-key``, default ``level``; names mapped by ``--levels pbe=0,ccsd=1``), or ``--level N``
for the whole file (a frame whose own level differs is an error). Frames without a level key
are at level 0, as in training. A file with several levels also gets per-level errors
(``level_<m>_energy_mae`` ...)::

    tace-jax eval mf_model mixed.xyz               # each frame at atoms.info["level"]
    tace-jax eval mf_model ccsd.xyz --level 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .main import X64_HINT

__all__ = ["evaluate_structures", "main", "parity_plot", "response_plan"]

#: Response metrics of ``tace-jax eval`` and their (label) units; printed in milli-units.
RESPONSE_UNITS = {
    "polarization": "e·Å",
    "dipole": "e·Å",
    "conservative_polarizability": "e·Å²/V",
    "polarizability": "e·Å²/V",
    "born_effective_charges": "e",
}


def evaluate_structures(potential, structures, batch_size: int = 16) -> tuple[dict, dict]:
    """Predict ``structures`` with ``potential``, each at its own fidelity level
    (``Structure.level``), and compare with their labels.

    Returns:
        ``(metrics, arrays)``: :func:`tace_jax.train.metrics.error_metrics` of the labelled
        quantities (plus ``level_<m>_*`` errors per level when there are several), and the
        flat prediction/reference arrays used for them.
    """
    from tace_jax.train.metrics import error_metrics

    levels = sorted({s.level for s in structures})
    plan = response_plan(potential, structures)
    preds = predict_structures(potential, structures, batch_size, plan)
    metrics, arrays = _compare(preds, structures, error_metrics, plan)
    if len(levels) > 1:
        for m in levels:
            sub = [(p, s) for p, s in zip(preds, structures) if s.level == m]
            lm, _ = _compare([p for p, _ in sub], [s for _, s in sub], error_metrics, plan)
            metrics.update({f"level_{m}_{k}": v for k, v in lm.items()})
    return metrics, arrays


def response_plan(potential, structures) -> dict[str, tuple[str, str]]:
    """Which labelled response quantities ``potential`` can be compared on.

    Returns:
        ``{label attribute: (metric name, prediction name)}`` for the labels present in any
        of ``structures`` that the model predicts (see the module docstring).
    """
    field = "electric_field" in potential.input_names
    targets = tuple(potential.config.targets)
    les = bool(getattr(potential.config, "les", False))
    options = {
        "polarization": [(field, "polarization", "polarization")],
        "dipole": [(field, "dipole", "polarization"), (True, "dipole", "direct_dipole")],
        "polarizability": [
            (field, "conservative_polarizability", "conservative_polarizability"),
            (True, "polarizability", "direct_polarizability"),
        ],
        "born_charges": [
            (field, "born_effective_charges", "born_effective_charges"),
            (les, "born_effective_charges", "les_born_effective_charges"),
        ],
    }
    plan = {}
    for label, choices in options.items():
        if not any(getattr(s, label) is not None for s in structures):
            continue
        for ok, metric, pred in choices:
            if ok and (not pred.startswith("direct_") or pred in targets):
                plan[label] = (metric, pred)
                break
    return plan


def predict_structures(potential, structures, batch_size: int = 16, plan=None) -> list[dict]:
    """``potential.predict`` of ``structures`` with each one's ``level`` (and its other model
    inputs); energy, forces and, where any frame has one, stress and the labelled response
    quantities of ``plan`` (default: :func:`response_plan`)."""
    from tace_jax.data import structure_to_atoms

    want_stress = any(s.stress is not None for s in structures)
    props = ("energy", "forces") + (("stress",) if want_stress else ())
    plan = response_plan(potential, structures) if plan is None else plan
    for _, pred in plan.values():
        if not pred.startswith("direct_") and pred not in props:
            props += (pred,)
    multi = "level" in potential.input_names
    atoms = []
    for s in structures:
        a = structure_to_atoms(s)
        if multi:  # structure_to_atoms leaves out level 0; a multi-level model needs it
            a.info["level"] = s.level
        atoms.append(a)
    return potential.predict(atoms, props, batch_size=batch_size)


def _response_pred(p: dict, s, label: str, pred: str) -> np.ndarray:
    """One structure's prediction for a response label, in the label's units (folded)."""
    from tace_jax.train.loss_response import DEBYE_PER_E_ANGSTROM
    from tace_jax.train.metrics import fold_dipole_np

    value = np.asarray(p[pred], np.float64)
    if pred == "direct_dipole":  # the head is in Debye (docs/theory.md §2.10)
        value = value / DEBYE_PER_E_ANGSTROM
    if pred == "polarization":  # periodic: the branch of P nearest the label
        ref = np.asarray(getattr(s, label), np.float64)
        value = ref + fold_dipole_np((value - ref)[None], s.cell[None], s.pbc[None])[0]
    return value


def _compare(preds, structures, error_metrics, plan=None) -> tuple[dict, dict]:
    plan = plan or {}
    want_stress = any(s.stress is not None for s in structures)
    a: dict[str, list] = {}

    def add(key, value):
        a.setdefault(key, []).append(np.asarray(value, np.float64))

    for p, s in zip(preds, structures):
        if s.energy is not None:
            add("energy_pred", [p["energy"]])
            add("energy_ref", [s.energy])
            add("n_atoms", [s.n_atoms])
        if s.forces is not None:
            add("forces_pred", p["forces"])
            add("forces_ref", s.forces)
            add("numbers", s.numbers)
        if want_stress and s.stress is not None:
            add("stress_pred", [p["stress"]])
            add("stress_ref", [s.stress])
        for label, (metric, pred) in plan.items():
            ref = getattr(s, label)
            if ref is None:
                continue
            per_atom = label == "born_charges"
            value = _response_pred(p, s, label, pred)
            add(f"{metric}_pred", value if per_atom else value[None])
            add(f"{metric}_ref", ref if per_atom else np.asarray(ref)[None])
            if per_atom:
                add(f"{metric}_numbers", s.numbers)
    arrays = {k: np.concatenate(v) for k, v in a.items()}
    return error_metrics(**arrays), arrays


def parity_plot(arrays: dict, path: str, title: str = "") -> None:
    """Write a parity plot (PNG) of energy per atom, forces and stress."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if "energy_pred" in arrays:
        n = arrays["n_atoms"]
        panels.append(("energy / atom (eV)", arrays["energy_ref"] / n, arrays["energy_pred"] / n))
    if "forces_pred" in arrays:
        panels.append(
            ("force components (eV/Å)", arrays["forces_ref"].ravel(), arrays["forces_pred"].ravel())
        )
    if "stress_pred" in arrays:
        panels.append(
            ("stress (eV/Å³)", arrays["stress_ref"].ravel(), arrays["stress_pred"].ravel())
        )
    for metric, unit in RESPONSE_UNITS.items():
        if f"{metric}_pred" in arrays:
            label = f"{metric.replace('_', ' ')} ({unit})"
            panels.append(
                (label, arrays[f"{metric}_ref"].ravel(), arrays[f"{metric}_pred"].ravel())
            )
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 4))
    axes = np.atleast_1d(axes)
    for ax, (label, ref, pred) in zip(axes, panels):
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.scatter(ref, pred, s=4, alpha=0.5)
        mae = np.mean(np.abs(pred - ref))
        ax.set_title(f"{label}\nMAE {1e3 * mae:.2f} m{label.split('(')[-1][:-1]}", fontsize=9)
        ax.set_xlabel("reference")
        ax.set_ylabel("predicted")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_metrics(m: dict, file=None) -> None:
    """A small table in meV units (to ``file``, default the current ``sys.stdout``)."""
    file = sys.stdout if file is None else file
    rows = [
        ("energy", "meV"),
        ("energy_per_atom", "meV/atom"),
        ("forces", "meV/Å"),
        ("stress", "meV/Å³"),
        ("virials", "meV"),
    ]
    rows += [
        (k[:-4], "meV/Å")
        for k in m
        if k.startswith("forces_") and k.endswith("_mae") and k.count("_") == 2
    ]
    rows += [(k, f"m{u}") for k, u in RESPONSE_UNITS.items()]
    rows += [
        (k[:-4], "me")
        for k in m
        if k.startswith("born_effective_charges_") and k.endswith("_mae") and k.count("_") == 4
    ]
    levels = sorted({int(k.split("_")[1]) for k in m if k.startswith("level_")})
    rows += [(f"level_{lv}_{q}", u) for lv in levels for q, u in rows[:3]]
    print(f"{'quantity':<30}{'MAE':>12}{'RMSE':>12}  unit", file=file)
    for key, unit in rows:
        if f"{key}_mae" in m:
            print(
                f"{key:<30}{1e3 * m[key + '_mae']:>12.3f}{1e3 * m[key + '_rmse']:>12.3f}  {unit}",
                file=file,
            )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tace-jax eval", description="Evaluate a saved model on a labelled data file."
    )
    p.add_argument("model", help="model file written by training (<output_dir>/model)")
    p.add_argument("data", help="data file (extxyz, xyz, npz, ase db, ...)")
    p.add_argument("--energy-key", default="energy")
    p.add_argument("--forces-key", default="forces")
    p.add_argument("--stress-key", default="stress")
    p.add_argument("--polarization-key", default="polarization")
    p.add_argument("--dipole-key", default="dipole")
    p.add_argument("--polarizability-key", default="polarizability")
    p.add_argument("--born-charges-key", default="born_effective_charges")
    p.add_argument(
        "--units",
        default=None,
        help="units of the file, e.g. energy=hartree,length=bohr,dipole=0.529177 "
        "(names of tace_jax.data.units or factors to eV/Å/e)",
    )
    p.add_argument("--index", default=":", help="frame selection, e.g. 0:200")
    p.add_argument(
        "--level-key", default="level", help="per-frame fidelity level key (multi-level models)"
    )
    p.add_argument(
        "--level", type=int, default=None, help="fidelity level of every frame of the file"
    )
    p.add_argument("--levels", default=None, help="level names in the file, e.g. pbe=0,ccsd=1")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="compute dtype (default: the model's); float64 needs JAX_ENABLE_X64=1",
    )
    p.add_argument("--out", default=None, help="parity plot PNG")
    p.add_argument("--json", default=None, help="write the metrics (eV units) as JSON")
    return p


def _level_names(text: str | None) -> dict | None:
    """``"pbe=0,ccsd=1"`` → ``{"pbe": 0, "ccsd": 1}``."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, index = item.partition("=")
        if not name.strip() or not index.strip().isdigit():
            raise ValueError(f"--levels: {item!r} is not of the form name=index")
        out[name.strip()] = int(index)
    return out


def _units(text: str | None) -> dict | None:
    """``"energy=hartree,dipole=0.529"`` → ``{"energy": "hartree", "dipole": 0.529}``."""
    if not text:
        return None
    out: dict = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if not name.strip() or not value.strip():
            raise ValueError(f"--units: {item!r} is not of the form property=unit")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            out[name.strip()] = value.strip()
    return out


def _check_levels(structures, num_levels: int) -> None:
    from tace_jax.data import DataError

    for s in structures:
        if s.level >= num_levels:
            raise DataError(
                f"{s.where}: field 'level' is {s.level} but the model has {num_levels} "
                f"level(s) (0..{num_levels - 1}); set --level or --level-key"
            )


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    import jax

    from tace_jax.data import DataError
    from tace_jax.inference import Potential
    from tace_jax.train.prepare import read_levelled

    try:
        pot = Potential.load(args.model, dtype=args.dtype)
        structures = read_levelled(
            args.data,
            args.level,
            index=args.index,
            energy_key=args.energy_key,
            forces_key=args.forces_key,
            stress_key=args.stress_key,
            polarization_key=args.polarization_key,
            dipole_key=args.dipole_key,
            polarizability_key=args.polarizability_key,
            born_charges_key=args.born_charges_key,
            units=_units(args.units),
            level_key=args.level_key,
            levels=_level_names(args.levels),
            atomic_numbers=pot.config.atomic_numbers,
        )
        _check_levels(structures, pot.config.num_levels)
        if not any(s.energy is not None or s.forces is not None for s in structures) and not (
            response_plan(pot, structures)
        ):
            raise DataError(
                f"{args.data}: no frame has labels {args.energy_key!r} or {args.forces_key!r} "
                "or a response label this model predicts (set --energy-key / --forces-key, "
                "--dipole-key, --polarizability-key, --born-charges-key, --polarization-key)"
            )
        t0 = time.time()
        metrics, arrays = evaluate_structures(pot, structures, args.batch_size)
    except (DataError, ValueError, OSError) as e:  # OSError: missing/unreadable paths
        print(f"tace-jax eval: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # float64 (--dtype or the model's) while 64-bit JAX is off
        if jax.config.jax_enable_x64:
            raise
        print(f"tace-jax eval: error: {e}\n{X64_HINT.format(cmd='eval')}", file=sys.stderr)
        return 2
    print(f"{args.model} on {args.data}: {len(structures)} structures ({time.time() - t0:.1f} s)")
    print_metrics(metrics)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(metrics, f, indent=1)
    if args.out:
        parity_plot(arrays, args.out, title=f"{args.model} on {args.data}")
        print(f"parity plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
