"""``tace-jax spectrum MODEL STRUCTURE``: IR and Raman spectra from MD and/or the harmonic model.

``--method md`` runs MD (NVE by default, from velocities at ``--temperature``), records the
dipole (P for a field model) and the polarizability every ``--record-every`` steps
(:class:`~tace_jax.md.recording.ResponseRecorder`, evaluated in batches) and transforms their
autocorrelations (:func:`~tace_jax.spectra.ir_from_dipoles`,
:func:`~tace_jax.spectra.raman_from_polarizabilities`). ``--method harmonic`` computes
Lorentzian-broadened harmonic IR intensities and Raman activities (a field model: Born charges
and the conservative polarizability). ``--method both`` does both; the PNG overlays them, each
spectrum scaled to a maximum of 1. ``docs/theory.md §3``.

Outputs: ``--csv`` (columns ``method,spectrum,frequencies_cm,intensities``; raw intensities),
``--png`` (needs matplotlib), ``--json`` (peak positions) and ``--series`` (the recorded MD
dipole/polarizability series and their spacing ``dt_fs``, npz). Progress bars (tqdm) cover the
MD and the batched response evaluation (``--no-progress`` turns them off).
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

import numpy as np

__all__ = ["main", "run", "write_csv", "plot_spectra"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tace-jax spectrum",
        description="IR/Raman spectra (MD autocorrelation and/or harmonic) of a saved model.",
    )
    p.add_argument("model", help="saved model (.tace) or reference .npz (+ .json)")
    p.add_argument("structure", help="structure file readable by ASE")
    p.add_argument("--index", default="-1", help="frame index in the structure file")
    p.add_argument("--method", default="md", choices=("md", "harmonic", "both"))
    p.add_argument("--ir", action="store_true", help="IR spectrum (default if no --raman)")
    p.add_argument("--raman", action="store_true", help="Raman spectrum (anisotropic)")
    p.add_argument("--png", default=None, help="plot file (PNG, needs matplotlib)")
    p.add_argument("--csv", default=None, help="CSV file of the spectra")
    p.add_argument("--json", default=None, help="summary JSON (peak positions, settings)")
    p.add_argument(
        "--series",
        default=None,
        help="npz of the recorded MD series (steps, dipole, polarizability, dt_fs)",
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "float64"),
        help="compute dtype (default: float64 when JAX_ENABLE_X64=1, else float32 with a note)",
    )
    p.add_argument("--steps", type=int, default=4000, help="MD steps")
    p.add_argument("--temperature", type=float, default=50.0, help="initial temperature, K")
    p.add_argument("--timestep", type=float, default=0.5, help="MD time step, fs")
    p.add_argument("--record-every", type=int, default=2, help="recording stride, steps")
    p.add_argument("--ensemble", default="nve", help="MD ensemble (default nve)")
    p.add_argument("--seed", type=int, default=0, help="velocity seed")
    p.add_argument("--batch-size", type=int, default=32, help="frames per predict batch")
    p.add_argument(
        "--electric-field",
        type=float,
        nargs=3,
        default=None,
        metavar=("EX", "EY", "EZ"),
        help="fixed field, V/Å (default atoms.info['electric_field'] or 0 for field models)",
    )
    p.add_argument("--relax", action="store_true", help="BFGS-relax the structure first")
    p.add_argument("--fmax", type=float, default=1e-4, help="relaxation threshold, eV/Å")
    p.add_argument("--width", type=float, default=10.0, help="harmonic Lorentzian FWHM, cm^-1")
    p.add_argument("--max-frequency", type=float, default=4500.0, help="upper limit, cm^-1")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _field(pot, atoms, args) -> dict:
    if "electric_field" not in tuple(getattr(pot, "input_names", ()) or ()):
        if args.electric_field is not None:
            raise ValueError("--electric-field given but the model has no electric_field input")
        return {}
    f = args.electric_field
    if f is None:
        f = atoms.info.get("electric_field", np.zeros(3))
    return {"electric_field": np.asarray(f, np.float64).reshape(3)}


def _node_inputs_from_results(pot, atoms, where) -> None:
    """Per-atom model inputs (e.g. ``charges``) that ASE moved into ``calc.results`` on reading
    go back to ``atoms.arrays``, where the model looks for them."""
    results = getattr(atoms.calc, "results", None) or {}
    for name in ("charges",):
        if name in tuple(getattr(pot, "input_names", ()) or ()) and name not in atoms.arrays:
            if name not in results:
                raise ValueError(
                    f"{where}: the model needs the per-atom input {name!r}; add a {name!r} "
                    "column to the structure file (extxyz)"
                )
            atoms.arrays[name] = np.asarray(results[name], np.float64).reshape(len(atoms))


def _md_spectra(pot, atoms, args, kinds, inputs) -> dict:
    from tace_jax.md.recording import ResponseRecorder
    from tace_jax.md.run import run_md
    from tace_jax.spectra import ir_from_dipoles, raman_from_polarizabilities

    rec = ResponseRecorder(
        pot,
        [k for k in ("dipole", "polarizability") if k in kinds],
        every=args.record_every,
        batch_size=args.batch_size,
        inputs=inputs,
    )
    k = args.record_every
    log = k * max(1, args.steps // (20 * k))  # a multiple of k: one chunk length
    run_md(
        pot,
        atoms,
        args.steps,
        ensemble=args.ensemble,
        temperature=args.temperature,
        timestep=args.timestep,
        seed=args.seed,
        log_interval=log,
        inputs=inputs or None,
        progress=not args.no_progress,
        recorder=rec,
    )
    series = rec.compute(progress=not args.no_progress)
    if args.series:
        path = pathlib.Path(args.series)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in series.items() if isinstance(v, np.ndarray)}
        np.savez(path, dt_fs=rec.dt_fs, **arrays)
    out = {}
    kw = dict(max_frequency_cm=args.max_frequency)
    if "dipole" in kinds:
        out["ir"] = ir_from_dipoles(series["dipole"], rec.dt_fs, **kw)
    if "polarizability" in kinds:
        out["raman"] = raman_from_polarizabilities(series["polarizability"], rec.dt_fs, **kw)
    return out


def _harmonic_spectra(pot, atoms, args, kinds, inputs) -> dict:
    from tace_jax.spectra import harmonic_ir, harmonic_raman

    if "electric_field" not in tuple(getattr(pot, "input_names", ()) or ()):
        raise ValueError(
            "--method harmonic needs a field model (an 'electric_field' input: Born charges and "
            "the conservative polarizability); this model has none"
        )
    hess = pot.hessian(atoms, **inputs)
    kw = dict(
        electric_field=inputs["electric_field"],
        broadening_cm=args.width,
        grid_max_cm=args.max_frequency,
        hessian=hess,
    )
    out = {}
    if "dipole" in kinds:
        out["ir"] = harmonic_ir(pot, atoms, **kw)
    if "polarizability" in kinds:
        out["raman"] = harmonic_raman(pot, atoms, **kw)
    return out


def write_csv(path, spectra: dict) -> pathlib.Path:
    """Write ``{(method, spectrum): (frequencies_cm, intensities)}`` as one long CSV."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "spectrum", "frequencies_cm", "intensities"])
        for (method, name), (f, i) in spectra.items():
            for fk, ik in zip(np.asarray(f), np.asarray(i)):
                w.writerow([method, name, f"{fk:.6g}", f"{ik:.8g}"])
    return path


def plot_spectra(path, spectra: dict, max_frequency_cm: float | None = None) -> pathlib.Path:
    """PNG with one panel per spectrum (IR, Raman), MD and harmonic overlaid (max-normalised).

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    try:  # the Agg canvas directly: no global backend switch, no pyplot state
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise RuntimeError(
            "--png needs matplotlib, which is not installed (pip install matplotlib), or "
            "drop --png and use --csv"
        ) from err

    names = list(dict.fromkeys(name for _, name in spectra))
    fig = Figure(figsize=(7, 3 * len(names)), dpi=120)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(len(names), 1, k + 1) for k in range(len(names))]
    for ax, name in zip(axes, names):
        for (method, nm), (f, i) in spectra.items():
            if nm != name:
                continue
            i = np.asarray(i, np.float64)
            top = np.max(np.abs(i)) if i.size else 0.0
            ax.plot(f, i / top if top > 0 else i, label=method, lw=1.2)
        ax.set_title({"ir": "IR", "raman": "Raman (anisotropic)"}.get(name, name))
        ax.set_xlabel("wavenumber (cm$^{-1}$)")
        ax.set_ylabel("intensity (normalised)")
        if max_frequency_cm:
            ax.set_xlim(0, max_frequency_cm)
        ax.legend()
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _peaks(f, i, n: int = 5) -> list[float]:
    f, i = np.asarray(f), np.asarray(i)
    if i.size < 3:
        return []
    inner = np.flatnonzero((i[1:-1] > i[:-2]) & (i[1:-1] >= i[2:])) + 1
    top = inner[np.argsort(i[inner])[::-1][:n]]
    return sorted(float(x) for x in f[top])


def run(args) -> dict:
    """Compute the spectra for parsed ``args``; returns a JSON-able summary."""
    import ase.io

    from tace_jax.cli.md import load_potential

    if args.record_every < 1:
        raise ValueError(f"--record-every must be >= 1, got {args.record_every}")
    if args.method != "harmonic" and args.steps < 2 * args.record_every:
        raise ValueError(f"--steps must be >= 2 * --record-every, got {args.steps}")
    kinds = []
    if args.ir or not args.raman:
        kinds.append("dipole")
    if args.raman:
        kinds.append("polarizability")
    dtype = args.dtype
    if dtype is None:
        import jax

        dtype = "float64" if jax.config.jax_enable_x64 else "float32"
        if dtype == "float32":
            print("note: computing in float32; JAX_ENABLE_X64=1 gives float64", file=sys.stderr)
    pot = load_potential(args.model, dtype)
    try:
        atoms = ase.io.read(args.structure, index=int(args.index))
    except Exception as err:
        raise ValueError(f"{args.structure}: cannot read frame {args.index} ({err})") from err
    _node_inputs_from_results(pot, atoms, args.structure)
    inputs = _field(pot, atoms, args)
    if "electric_field" in inputs:
        atoms.info["electric_field"] = inputs["electric_field"]
    if args.relax:
        from ase.optimize import BFGS

        from tace_jax.calculator import TACECalculator

        atoms.calc = TACECalculator(pot)
        BFGS(atoms, logfile=None).run(fmax=args.fmax, steps=2000)
        atoms.calc = None
    spectra = {}
    if args.method in ("md", "both"):
        for name, s in _md_spectra(pot, atoms, args, kinds, inputs).items():
            spectra[("md", name)] = s
    if args.method in ("harmonic", "both"):
        for name, s in _harmonic_spectra(pot, atoms, args, kinds, inputs).items():
            spectra[("harmonic", name)] = s
    summary = {
        "method": args.method,
        "settings": dict(vars(args)),
        "peaks_cm": {f"{m}_{n}": _peaks(*s) for (m, n), s in spectra.items()},
    }
    for (m, n), s in spectra.items():
        print(f"{m:>8} {n:<5} peaks (cm^-1): " + ", ".join(f"{p:.0f}" for p in _peaks(*s)))
    if args.csv:
        summary["csv"] = str(write_csv(args.csv, spectra))
        print(f"spectra written to {summary['csv']}")
    if args.png:
        summary["png"] = str(plot_spectra(args.png, spectra, args.max_frequency))
        print(f"plot written to {summary['png']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"tace-jax spectrum: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
