"""ASE MD throughput of the reference PyTorch TACE 0.1.0 calculator (for comparison).

Needs ``torch`` and ``tace==0.1.0`` (see ``check_torch_import.py``). Builds a random model
with the reference default config (tests/fixtures/tace_default.json ``model_config`` and
statistics), saves it as a ``tace-export`` ``-state.pt`` and runs ASE ``VelocityVerlet``
(0.5 fs) with tace's own ``TACEAseCalc`` (energy + forces only) on

* aspirin (21 atoms, fixture geometry), and
* a 64 H2O box (192 atoms, 12.42 Å cubic, periodic),

in float32 with 1 and 2 torch threads. Reports ms/step and atom-steps/s over ``--steps``
steps after ``--warmup`` steps.

Usage::

    python benchmarks/bench_md_reference.py [--steps 20] [--warmup 5] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "tace_default.json")


def water_box(n_side: int = 4, box: float = 12.42, seed: int = 0):
    """``n_side**3`` randomly oriented H2O molecules on a cubic grid (pbc)."""
    from ase import Atoms
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    oh, ang = 0.9572, np.deg2rad(104.52)
    mol = np.array([[0, 0, 0], [oh, 0, 0], [oh * np.cos(ang), oh * np.sin(ang), 0]], dtype=float)
    pos, nums = [], []
    a = box / n_side
    for i in range(n_side):
        for j in range(n_side):
            for k in range(n_side):
                rot = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
                pos.append(mol @ rot.T + a * (np.array([i, j, k]) + 0.5))
                nums += [8, 1, 1]
    return Atoms(numbers=nums, positions=np.concatenate(pos), cell=np.eye(3) * box, pbc=True)


def aspirin(meta):
    from ase import Atoms

    s = meta["systems"]["aspirin"]
    return Atoms(numbers=s["numbers"], positions=s["positions"])


def build_state_pt(out: str) -> dict:
    """Random default-size reference model saved as ``-state.pt`` (float32)."""
    import torch
    from tace.dataset.statistics import Statistics
    from tace.lightning.select_model import select_model

    with open(FIXTURE) as f:
        meta = json.load(f)
    torch.set_default_dtype(torch.float32)
    stats = []
    for s in meta["statistics"]:
        s = dict(s)
        s["atomic_energy"] = {int(k): v for k, v in s["atomic_energy"].items()}
        s["rms_forces_by_element"] = {int(k): v for k, v in s["rms_forces_by_element"].items()}
        stats.append(Statistics(**s))
    torch.manual_seed(0)
    model = select_model(dict(meta["model_config"]), stats, ["energy", "forces"], [])
    rf = model.readout_fn
    torch.save(
        {
            "state_dict": model.state_dict(),
            "cfg": rf.model_config,
            "target_property": ["energy", "forces"],
            "embedding_property": [],
            "statistics": rf.statistics,
        },
        out,
    )
    return meta


def run_md(calc, atoms, steps: int, warmup: int) -> float:
    """Seconds per VelocityVerlet step (after ``warmup`` steps)."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.run(warmup)
    t0 = time.perf_counter()
    dyn.run(steps)
    dt = (time.perf_counter() - t0) / steps
    if not np.isfinite(atoms.get_potential_energy()):
        raise RuntimeError("MD blew up")
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = ap.parse_args(argv)
    import torch
    from tace.interface.ase.calculator import TACEAseCalc

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "default-state.pt")
        meta = build_state_pt(path)
        calc = TACEAseCalc(path, dtype="float32", device="cpu")
        systems = {"aspirin": aspirin(meta), "water192": water_box()}
        head = f"{args.warmup} warm-up + {args.steps} steps"
        print(f"torch {torch.__version__}, float32, CPU, {os.cpu_count()} cores; {head}")
        print(f"{'system':10s} {'atoms':>5s} {'threads':>7s} {'ms/step':>9s} {'atom-steps/s':>13s}")
        for nt in args.threads:
            torch.set_num_threads(nt)
            for name, atoms in systems.items():
                dt = run_md(calc, atoms, args.steps, args.warmup)
                n = len(atoms)
                print(f"{name:10s} {n:5d} {nt:7d} {1e3 * dt:9.1f} {n / dt:13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
