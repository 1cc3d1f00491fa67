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

Processes: by default each side runs in its own worker process (``spawn``; the tace_jax
worker loads the converted model from a file and never imports torch), the parent sending the
positions and alternating the calls; the timings are taken inside the workers. With
``--same-process`` both calculators share this process (the protocol of earlier versions); then
tace_jax makes its first call (XLA creates its CPU thread pools at the first execution) before
``torch.set_num_threads``. The other way round (``--torch-first``, the order of earlier
versions of this script) every tace_jax call of the process is slower:
aspirin through ASE, same weights, no torch call in between, 15.2 vs 8.8 ms median (ad-hoc
script run once each way, 2026-12-04; the cause was not found: thread affinity and counts are
the same). Neither package would share a process with the other in use; the worker processes
keep the side-by-side run from measuring that interference.

Each thread count runs in its own subprocess (XLA's thread pool is fixed at start): ``1`` pins
the process to one core (``taskset``) and sets XLA, torch and BLAS to one thread; ``2`` gives
both two threads.

Usage::

    python benchmarks/compare_reference.py        # aspirin + water192, 1 and 2 threads
    python benchmarks/compare_reference.py --threads 2 --systems aspirin,water,si --repeats 5
    python benchmarks/compare_reference.py --threads 2 --repeats 4 --burst 5   # MD-like turns
    python benchmarks/compare_reference.py --threads 2 --same-process         # one process
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


def _time_system(name, atoms, sides, repeats, burst, rng, threads) -> dict:
    """Alternate the ``sides`` (``{name: call(system, positions) -> (energy, seconds,
    finite)}``) on displaced copies of ``atoms``; one result row."""
    import numpy as np
    import torch

    times = {k: [] for k in sides}
    first, max_de = {}, 0.0
    for rep in range(repeats + 1):  # repeat 0: warm-up (compilation), not timed
        steps = [
            atoms.positions + rng.normal(scale=0.01, size=atoms.positions.shape)
            for _ in range(1 if rep == 0 else burst)
        ]
        energies = {}
        for k, call in sides.items():  # each side runs its `burst` calls, then the other
            energies[k] = []
            for new in steps:
                e, dt, finite = call(name, new)
                if not finite:
                    raise RuntimeError(f"{name}: {k} gave non-finite forces")
                energies[k].append(e)
                if rep == 0:
                    first[k] = dt
                else:
                    times[k].append(dt)
        de = np.abs(np.subtract(energies["reference"], energies["tace_jax"]))
        max_de = max(max_de, float(de.max()))
    ref_t, jax_t = np.median(times["reference"]), np.median(times["tace_jax"])
    return {
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


def _ase_call(atoms_by_system: dict, calc):
    """``call(system, positions)``: set the positions of that system's ``Atoms`` (one per side
    and system, as in MD) and time energy + forces through ``calc``."""
    import numpy as np

    for a in atoms_by_system.values():
        a.calc = calc

    def call(name, positions):
        a = atoms_by_system[name]
        a.set_positions(positions)
        t0 = time.perf_counter()
        e = a.get_potential_energy()
        f = a.get_forces()
        return float(e), time.perf_counter() - t0, bool(np.isfinite(f).all())

    return call


def run_one(
    threads: int,
    names: list[str],
    repeats: int,
    seed: int,
    burst: int = 1,
    torch_first: bool = False,
) -> list[dict]:
    """Time both calculators in this process; returns one row per system."""
    import numpy as np
    import torch

    if torch_first:
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
        systems = _systems(names, meta)
        if not torch_first:  # XLA's first execution (its thread pools) before torch's threads
            warm = next(iter(systems.values())).copy()
            warm.calc = jax_calc
            warm.get_forces()
            torch.set_num_threads(threads)
        rng = np.random.default_rng(seed)
        sides = {
            "reference": _ase_call({k: a.copy() for k, a in systems.items()}, ref_calc),
            "tace_jax": _ase_call({k: a.copy() for k, a in systems.items()}, jax_calc),
        }
        for name, atoms in systems.items():
            rows.append(_time_system(name, atoms, sides, repeats, burst, rng, threads))
    return rows


def _serve(kind: str, model_path: str, threads: int, names: list[str], meta: dict, conn) -> None:
    """One side in its own process: ``(system, positions)`` in, ``(energy, seconds, finite)``
    out, until ``None`` (the default protocol; ``--same-process`` does without)."""

    sys.path.insert(0, os.path.dirname(HERE))
    if kind == "reference":
        import torch
        from tace.interface.ase.calculator import TACEAseCalc

        torch.set_num_threads(threads)
        calc = TACEAseCalc(model_path, dtype="float32", device="cpu")
    else:  # no torch in this process: the converted model file
        from tace_jax.calculator import TACECalculator
        from tace_jax.inference import Potential

        calc = TACECalculator(Potential.load(model_path, dtype="float32"))
    call = _ase_call(_systems(names, meta), calc)
    conn.send("ready")
    while (msg := conn.recv()) is not None:
        conn.send(call(*msg))


def run_isolated(
    threads: int, names: list[str], repeats: int, seed: int, burst: int = 1
) -> list[dict]:
    """As :func:`run_one`, each side in its own worker process (started with ``spawn``), the
    parent alternating the calls; the timings are taken inside the workers."""
    import multiprocessing as mp

    import numpy as np

    sys.path.insert(0, os.path.dirname(HERE))
    from bench_md_reference import build_state_pt

    from tace_jax.inference import Potential
    from tace_jax.models.torch_import import load_torch_checkpoint

    ctx = mp.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = os.path.join(tmp, "default-state.pt")
        jax_path = os.path.join(tmp, "model.tace")
        meta = build_state_pt(ref_path)
        Potential(*load_torch_checkpoint(ref_path), dtype="float32").save(jax_path)
        workers = {}
        for kind, path in (("reference", ref_path), ("tace_jax", jax_path)):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(kind, path, threads, names, meta, child))
            proc.start()
            workers[kind] = (proc, parent)
        try:
            for kind, (_, conn) in workers.items():
                if conn.recv() != "ready":
                    raise RuntimeError(f"compare_reference: the {kind} worker did not start")
            rng = np.random.default_rng(seed)

            def remote(conn):
                return lambda name, positions: (conn.send((name, positions)), conn.recv())[1]

            sides = {k: remote(conn) for k, (_, conn) in workers.items()}
            for name, atoms in _systems(names, meta).items():
                row = _time_system(name, atoms, sides, repeats, burst, rng, threads)
                rows.append({**row, "isolated": True})
        finally:
            for proc, conn in workers.values():
                if proc.is_alive():
                    conn.send(None)
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
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
    p.add_argument(
        "--same-process",
        action="store_true",
        help="time both calculators in one process (the earlier protocol) instead of one "
        "worker process per side",
    )
    p.add_argument(
        "--torch-first",
        action="store_true",
        help="set torch's threads before tace_jax's first call (slows every tace_jax call in "
        "the process; see the module docstring)",
    )
    p.add_argument("--json", default=None, help="also write the rows to this json file")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    names = a.systems.split(",")
    if a.one is not None:
        if a.same_process:
            rows = run_one(a.one, names, a.repeats, a.seed, a.burst, a.torch_first)
        else:
            rows = run_isolated(a.one, names, a.repeats, a.seed, a.burst)
        print(json.dumps(rows))
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
        cmd += ["--burst", str(a.burst)] + (["--torch-first"] if a.torch_first else [])
        cmd += ["--same-process"] if a.same_process else []
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
    turns += ", both in one process" if a.same_process else ", one worker process per side"
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
