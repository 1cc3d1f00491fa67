"""Check ``tace_jax.models.torch_import`` against the reference PyTorch TACE 0.1.0 (float64).

Needs ``torch`` and ``tace==0.1.0`` next to tace_jax (``pip install tace-jax[torch]`` plus
``pip install --no-deps tace==0.1.0 e3nn lightning omegaconf hydra-core matscipy
torch_geometric``). For each fixture config (tests/fixtures/tace_{tiny_l2,default}.json) it

1. builds a random reference model with tace's own builder (``select_model``), with noise added
   to every parameter so that biases matter;
2. saves it in the formats tace writes: Lightning-style ``.ckpt`` (``model.`` prefix,
   ``hyper_parameters`` {cfg, statistics}, EMA shadow weights), ``tace-export`` ``-state.pt``
   and ``-whole.pt``, and a bare ``state_dict`` (converted with ``config=``);
3. converts each with :func:`convert_torch_checkpoint`, loads it with ``tace_jax`` in float64,
   and compares energy and forces with tace's own ASE calculator (``TACEAseCalc``, which loads
   the same file with tace's own loader) on the fixture systems (hcooh, si8, ...).

Usage::

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 python benchmarks/check_torch_import.py [--out DIR]

Exit status 1 if any difference exceeds ``--tol`` (default 1e-10).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "tests", "fixtures")


def build_reference_model(fixture_json: str, seed: int = 0):
    """A random float64 ``WrapModelV1`` built by tace from a fixture's config and statistics."""
    import torch
    from tace.dataset.statistics import Statistics
    from tace.lightning.select_model import select_model

    with open(fixture_json) as f:
        meta = json.load(f)
    torch.set_default_dtype(torch.float64)
    stats = []
    for s in meta["statistics"]:
        s = dict(s)
        s["atomic_energy"] = {int(k): v for k, v in s["atomic_energy"].items()}
        s["rms_forces_by_element"] = {int(k): v for k, v in s["rms_forces_by_element"].items()}
        stats.append(Statistics(**s))
    torch.manual_seed(seed)
    model = select_model(
        dict(meta["model_config"]), stats, meta["target_property"], meta["embedding_property"]
    ).to(torch.float64)
    gen = torch.Generator().manual_seed(seed + 1234)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model, meta


def save_formats(model, meta, out_dir: str, name: str) -> dict[str, str]:
    """Write the checkpoint layouts tace 0.1.0 produces; returns ``{kind: path}``."""
    import torch

    rf = model.readout_fn
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        k: os.path.join(out_dir, f"{name}{ext}")
        for k, ext in (
            ("ckpt", ".ckpt"),
            ("state", "-state.pt"),
            ("whole", "-whole.pt"),
            ("bare", "-sd.pt"),
        )
    }
    sd = model.state_dict()
    # Lightning: LightningWrapperModel.save_hyperparameters(cfg, statistics) + EMA callback;
    # the raw weights are deliberately perturbed so that only the EMA copy gives the model.
    ckpt_sd = {"model." + k: (v + 1.0 if k.endswith(".weight") else v) for k, v in sd.items()}
    ema = {"shadow_params": [p.detach().clone() for p in model.parameters()], "decay": 0.99}
    cfg = {
        "model": {"config": meta["model_config"]},
        "callbacks": {"ema": {}},
        "loss": {"_target_": "tace.lightning.loss.Loss", "loss_property": ["energy", "forces"]},
    }
    torch.save(
        {
            "state_dict": ckpt_sd,
            "hyper_parameters": {"cfg": cfg, "statistics": rf.statistics},
            "ema_state_dict": ema,
            "epoch": 0,
            "global_step": 0,
        },
        paths["ckpt"],
    )
    torch.save(
        {
            "state_dict": sd,
            "cfg": rf.model_config,
            "target_property": rf.target_property,
            "embedding_property": rf.embedding_property,
            "statistics": rf.statistics,
        },
        paths["state"],
    )
    torch.save(model, paths["whole"])
    torch.save(sd, paths["bare"])
    return paths


def systems(meta):
    from ase import Atoms

    for name, s in meta["systems"].items():
        yield (
            name,
            Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"]),
        )


def check(fixture_json: str, out_dir: str, tol: float) -> float:
    """Max |Δ| of energy and forces over all formats and systems of one fixture config."""
    from tace.interface.ase.calculator import TACEAseCalc

    from tace_jax.inference import Potential
    from tace_jax.models.torch_import import load_torch_checkpoint

    name = os.path.splitext(os.path.basename(fixture_json))[0]
    model, meta = build_reference_model(fixture_json)
    paths = save_formats(model, meta, out_dir, name)
    ref = {}  # tace's own loader + ASE calculator on each file (bare: on the -state.pt)
    for kind in paths:
        src = paths["state" if kind == "bare" else kind]
        calc = TACEAseCalc(src, dtype="float64", device="cpu")
        for sys_name, atoms in systems(meta):
            atoms.calc = calc
            ref[kind, sys_name] = (atoms.get_potential_energy(), atoms.get_forces().copy())
    worst = 0.0
    for kind, path in paths.items():
        loaded = load_torch_checkpoint(path, config=fixture_json if kind == "bare" else None)
        pot = Potential(*loaded, dtype="float64")
        for sys_name, atoms in systems(meta):
            out = pot.predict(atoms, properties=("energy", "forces"))
            e_ref, f_ref = ref[kind, sys_name]
            de = abs(float(out["energy"]) - e_ref)
            df = float(np.abs(out["forces"] - f_ref).max())
            worst = max(worst, de, df)
            flag = "ok" if max(de, df) <= tol else "FAIL"
            print(
                f"{name:14s} {kind:6s} {sys_name:8s} E_torch={e_ref: .12f} "
                f"|dE|={de:.2e} max|dF|={df:.2e} {flag}"
            )
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="directory for the checkpoints (default: tmp)")
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--fixtures", nargs="*", default=["tace_tiny_l2.json", "tace_default.json"])
    args = ap.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        os.makedirs(out, exist_ok=True)
        worst = max(check(os.path.join(FIXTURES, f), out, args.tol) for f in args.fixtures)
    print(f"worst |diff| = {worst:.3e} (tol {args.tol:g})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
