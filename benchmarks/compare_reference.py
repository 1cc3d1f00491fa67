"""tace_jax against the reference PyTorch TACE 0.1.0, timed side by side in one run.

Needs ``torch`` and ``tace==0.1.0`` importable next to tace_jax (``pip install -e ".[torch]"``
then ``pip install --no-deps tace==0.1.0 e3nn lightning lightning_utilities torchmetrics
omegaconf hydra-core antlr4-python3-runtime==4.9.3 matscipy torch_geometric xxhash
opt_einsum_fx``; a side environment is best). Without them it exits with a message; it never
falls back to numbers from another machine.

What is timed: one random reference model with the default config of
``tests/fixtures/tace_default.json`` (2 layers, ν = 3, 48 channels, r_c = 6 Å), saved as a
``tace-export`` ``-state.pt``, and the *same weights* converted with
:func:`tace_jax.models.torch_import.load_torch_checkpoint`. Each side is its ASE calculator
(``TACEAseCalc`` and :class:`tace_jax.calculator.TACECalculator`), so the time of a call is
energy + forces **including the neighbour list / graph build**. Each repeat displaces the atoms
by a fresh small random vector (the same for both; each side keeps one ``Atoms``, as in MD) so
that no result cache is hit; the two calculators alternate within every repeat. The energies of
both are compared on every call (a wrong model would make a fast one meaningless).

``--burst K`` makes each turn ``K`` back-to-back calls per side (as in MD, where one
calculator is called step after step) before the other side's ``K``; ``1`` (the default) is
strict alternation, where each side starts every call after the other has run (measured: both
slow down a little after the other's call; tace_jax's thread pool also after any idle gap).

Each thread count runs in its own subprocess (XLA's thread pool is fixed at start): ``1`` pins
the process to one core (``taskset``) and sets XLA, torch and BLAS to one thread; ``2`` gives
both two threads.

Usage::

    python benchmarks/compare_reference.py        # aspirin + water192, 1 and 2 threads
    python benchmarks/compare_reference.py --threads 2 --systems aspirin,water,si --repeats 5
    python benchmarks/compare_reference.py --threads 2 --repeats 4 --burst 5   # MD-like turns
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _threads import one_thread  # noqa: E402


def _systems(names, meta):
    sys.path.insert(0, HERE)
    from bench_md_reference import aspirin, water_box
    from bench_model import build_system

    out = {}
    for n in names:
        if n == "aspirin":
            out[n] = aspirin(meta)
        elif n == "water":
            out[n] = water_box()
        else:
            out[n] = build_system(n)
    return out


def run_one(threads: int, names: list[str], repeats: int, seed: int, burst: int = 1) -> list[dict]:
    """Time both calculators in this process; returns one row per system."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    try:
        import tace_jax  # noqa: F401
    except ImportError:  # running from a source checkout
        sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    from bench_md_reference import build_state_pt
    from tace.interface.ase.calculator import TACEAseCalc

    from tace_jax.calculator import TACECalculator
    from tace_jax.inference import Potential
    from tace_jax.models.torch_import import load_torch_checkpoint

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "default-state.pt")
        meta = build_state_pt(path)
        ref_calc = TACEAseCalc(path, dtype="float32", device="cpu")
        pot = Potential(*load_torch_checkpoint(path), dtype="float32")
        jax_calc = TACECalculator(pot)
        rng = np.random.default_rng(seed)
        for name, atoms in _systems(names, meta).items():
            calcs = {"reference": ref_calc, "tace_jax": jax_calc}
            moved = {k: atoms.copy() for k in calcs}  # one Atoms per side, as in MD
            for k, calc in calcs.items():
                moved[k].calc = calc
            times = {k: [] for k in calcs}
            first = {}
            max_de = 0.0
            for rep in range(repeats + 1):  # repeat 0: warm-up (compilation), not timed
                steps = [
                    atoms.positions + rng.normal(scale=0.01, size=atoms.positions.shape)
                    for _ in range(1 if rep == 0 else burst)
                ]
                energies = {}
                for k in calcs:  # each side runs its `burst` calls back to back, then the other
                    a = moved[k]
                    energies[k] = []
                    for new in steps:
                        a.set_positions(new)
                        t0 = time.perf_counter()
                        energies[k].append(a.get_potential_energy())
                        f = a.get_forces()
                        dt = time.perf_counter() - t0
                        if rep == 0:
                            first[k] = dt
                        else:
                            times[k].append(dt)
                        if not np.isfinite(f).all():
                            raise RuntimeError(f"{name}: {k} gave non-finite forces")
                de = np.abs(np.subtract(energies["reference"], energies["tace_jax"]))
                max_de = max(max_de, float(de.max()))
            ref_t, jax_t = np.median(times["reference"]), np.median(times["tace_jax"])
            rows.append(
                {
                    "system": name,
                    "atoms": len(atoms),
                    "threads": threads,
                    "repeats": repeats,
                    "burst": burst,
                    "reference_ms": 1e3 * ref_t,
                    "tace_jax_ms": 1e3 * jax_t,
                    "speedup": ref_t / jax_t,
                    "reference_first_s": first["reference"],
                    "tace_jax_first_s": first["tace_jax"],
                    "max_abs_dE_eV": max_de,
                    "torch": torch.__version__,
                }
            )
    return rows


def _table(rows: list[dict]) -> str:
    lines = [
        "| system | atoms | threads | reference E+F | tace_jax E+F | speed-up | max abs dE |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['atoms']} | {r['threads']} | {r['reference_ms']:.1f} ms | "
            f"{r['tace_jax_ms']:.1f} ms | **{r['speedup']:.2f}x** | {r['max_abs_dE_eV']:.1e} eV |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", default="aspirin,water", help="aspirin, water (192), si (1440)")
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--repeats", type=int, default=10, help="timed calls per system and side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--burst",
        type=int,
        default=1,
        help="calls per side per turn (1: strict alternation; K > 1: K back-to-back calls "
        "per side, as in MD, then the other side; repeats x K timed calls per side)",
    )
    p.add_argument("--json", default=None, help="also write the rows to this json file")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    names = a.systems.split(",")
    if a.one is not None:
        print(json.dumps(run_one(a.one, names, a.repeats, a.seed, a.burst)))
        return 0
    try:
        import tace  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        msg = f"compare_reference: needs torch and tace==0.1.0 ({err}); see --help"
        print(msg, file=sys.stderr)
        return 2
    rows = []
    for nt in a.threads:
        env = dict(os.environ)
        cmd = [sys.executable, os.path.abspath(__file__), "--one", str(nt)]
        cmd += ["--systems", a.systems, "--repeats", str(a.repeats), "--seed", str(a.seed)]
        cmd += ["--burst", str(a.burst)]
        if nt == 1:
            env, cmd = one_thread(env, cmd)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        part = json.loads(proc.stdout.strip().splitlines()[-1])
        for r in part:
            print(json.dumps(r), flush=True)
        rows += part
    turns = "strict alternation" if a.burst == 1 else f"bursts of {a.burst} calls per side"
    print(
        f"\ncpu cores: {os.cpu_count()}, float32, energy+forces incl. graph build (median), "
        f"{turns}\n"
    )
    print(_table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
