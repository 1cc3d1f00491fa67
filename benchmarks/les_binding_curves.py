"""Binding curves of the LODE dimers: short-range TACE against TACE + LES (arXiv 2509.14961,
docs/theory.md §4), both trained with ``tace-jax train tace_jax/configs/les_dimers.yaml`` at
the same budget (see ``benchmarks/les_real_data.py``).

The binding energy of a separation is ``E(AB) − E(A) − E(B)``, with the monomers cut from the
dimer at ``indexB`` and every term predicted by the model (reference: ``inter_energy`` of the
file). The tail is the 3 largest separations of each pair (12–15 Å, the held-out test frames,
beyond twice the 5 Å cutoff of the models). Writes ``benchmarks/results/les_binding_tails.png``
(6 panels) and ``les_binding_tails.md`` (tail errors per pair).

Usage (from the repository root, after the two training runs)::

    python benchmarks/les_binding_curves.py [--runs runs] [--data runs/les_data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"sr": "short-range", "les": "LES"}


def binding_curves(pot, frames) -> dict:
    """``{label: (distance [K], reference [K], predicted [K], is_test [K])}`` in Å and eV."""
    out: dict = {}
    energy = lambda a: float(pot.predict(a, properties=("energy",))["energy"])
    for a, test in frames:
        b = int(a.info["indexB"])
        pred = energy(a) - energy(a[:b]) - energy(a[b:])
        row = out.setdefault(str(a.info["label"]), ([], [], [], []))
        for lst, v in zip(row, (a.info["distance"], a.info["inter_energy"], pred, test)):
            lst.append(v)
    for k, row in out.items():
        order = np.argsort(row[0])
        out[k] = tuple(np.asarray(v)[order] for v in row)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--data", default="runs/les_data")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    from ase.io import read
    from matplotlib.figure import Figure

    from tace_jax.inference import Potential

    data = Path(args.data)
    frames = [(a, False) for a in read(data / "dimers_train.xyz", ":") if "indexB" in a.info]
    frames += [(a, True) for a in read(data / "dimers_test.xyz", ":")]
    curves = {v: binding_curves(Potential.load(Path(args.runs) / f"les_dimers_{v}" / "model"),
                                frames) for v in VARIANTS}  # fmt: skip
    labels = sorted(curves["sr"])
    fig = Figure(figsize=(12, 6.5), constrained_layout=True)
    axes = fig.subplots(2, 3)
    rows, summary = [], {}
    for ax, lab in zip(axes.ravel(), labels):
        d, ref, _, test = curves["sr"][lab]
        ax.plot(d, ref, "ko-", label="DFT (inter_energy)")
        errs = {}
        for v, style in (("sr", "s--"), ("les", "^-")):
            pred = curves[v][lab][2]
            ax.plot(d, pred, style, label=f"TACE {VARIANTS[v]}")
            errs[v] = np.abs(pred - ref)[test]
        ax.axvspan(d[test].min() - 0.3, d.max() + 0.3, color="0.9", zorder=0)
        ax.set_title(f"{lab}: tail MAE SR {1e3 * errs['sr'].mean():.0f} / "
                     f"LES {1e3 * errs['les'].mean():.0f} meV")  # fmt: skip
        ax.set_xlabel("separation (Å)")
        ax.set_ylabel("binding energy (eV)")
        summary[lab] = {v: 1e3 * float(e.mean()) for v, e in errs.items()}
        ref_tail = 1e3 * float(np.abs(ref[test]).mean())
        rows.append(f"| {lab} | {ref_tail:.1f} | {summary[lab]['sr']:.1f} | "
                    f"{summary[lab]['les']:.1f} |")  # fmt: skip
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("LODE dimers: binding curves, test tail (12-15 Å) shaded")
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "les_binding_tails.png", dpi=110)
    all_sr = np.mean([s["sr"] for s in summary.values()])
    all_les = np.mean([s["les"] for s in summary.values()])
    text = "\n".join(
        [
            "| pair | mean abs. DFT binding energy in the tail meV | MAE short-range meV "
            "| MAE LES meV |",
            "|---|---|---|---|",
            *rows,
            f"| all | | {all_sr:.1f} | {all_les:.1f} |",
        ]
    )
    (RESULTS / "les_binding_tails.md").write_text(
        "# LODE dimers: binding-energy errors on the tail (3 largest separations per pair)\n\n"
        "`python benchmarks/les_binding_curves.py`\n\n" + text + "\n"
    )
    (RESULTS / "les_binding_tails.json").write_text(json.dumps(summary, indent=1))
    print(text)


if __name__ == "__main__":
    main()
