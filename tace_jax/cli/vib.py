"""``tace-jax vib MODEL STRUCTURE``: harmonic frequencies, zero-point energy and a spectrum PNG.

Molecules get normal modes with translations and rotations projected out; periodic structures
get Γ-point phonons of the given cell (translations projected). ``--relax`` first minimises the
structure with ASE's BFGS (frequencies are only meaningful at a minimum).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

__all__ = ["main", "run"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tace-jax vib",
        description="Vibrational analysis (autodiff Hessian) with a saved TACE model.",
    )
    p.add_argument("model", help="saved model (.tace) or reference .npz (+ .json)")
    p.add_argument("structure", help="structure file readable by ASE")
    p.add_argument("--index", default="-1", help="frame index in the structure file (default -1)")
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    p.add_argument("--relax", action="store_true", help="BFGS-relax the structure first")
    p.add_argument("--fmax", type=float, default=1e-4, help="relaxation threshold, eV/Å")
    p.add_argument("--png", default="vib_spectrum.png", help="spectrum plot (PNG)")
    p.add_argument("--width", type=float, default=10.0, help="Lorentzian FWHM, cm^-1")
    p.add_argument("--no-project", action="store_true", help="keep rigid-body modes")
    p.add_argument("--json", default=None, help="write frequencies and ZPE to this JSON file")
    p.add_argument("--chunk-size", type=int, default=16, help="Hessian rows per batch")
    return p


def run(args) -> dict:
    """Run the analysis for parsed ``args``; returns a JSON-able summary."""
    import ase.io

    from tace_jax.calculator import TACECalculator
    from tace_jax.cli.md import load_potential
    from tace_jax.vib import plot_spectrum, vibrational_analysis

    pot = load_potential(args.model, args.dtype)
    try:
        atoms = ase.io.read(args.structure, index=int(args.index))
    except Exception as err:
        raise ValueError(f"{args.structure}: cannot read frame {args.index} ({err})") from err
    if args.relax:
        from ase.optimize import BFGS

        atoms.calc = TACECalculator(pot)
        BFGS(atoms, logfile=None).run(fmax=args.fmax, steps=2000)
    res, _ = vibrational_analysis(
        pot, atoms, project=not args.no_project, chunk_size=args.chunk_size
    )
    print(res.summary())
    png = plot_spectrum(res, args.png, width=args.width)
    print(f"spectrum written to {png}")
    summary = {
        "frequencies_cm-1": [float(f) for f in res.frequencies],
        "zpe_ev": res.zpe,
        "num_imaginary": res.num_imaginary,
        "periodic": res.periodic,
        "png": str(png),
    }
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"tace-jax vib: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
