"""``tace-jax md CONFIG.yaml [key=value ...]``: molecular dynamics with a saved model.

The YAML file holds the keys of :class:`MDRunConfig` (``--print-config`` prints the defaults);
``key=value`` arguments override them. Outputs go to ``output``: ``md.log`` (thermodynamics),
the trajectory (extxyz, or ASE ``.traj``), ``final.extxyz`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

import yaml

__all__ = ["MDRunConfig", "load_md_config", "main", "run"]


@dataclasses.dataclass(frozen=True)
class MDRunConfig:
    """Options of ``tace-jax md`` (units: K, GPa, fs, 1/fs, Å).

    Attributes:
        model: ``.tace`` file from ``Potential.save`` (or a reference ``.npz`` + ``.json``).
        structure: any file ASE reads (extxyz, cif, POSCAR, …); ``index`` selects the frame.
        ensemble: ``nve``, ``nvt`` (Nosé–Hoover chain), ``langevin``, ``npt``.
        replicas: > 1 runs that many copies with different velocity seeds (vmapped).
    """

    model: str = ""
    structure: str = ""
    index: int = -1
    dtype: str = "float32"
    ensemble: str = "nvt"
    temperature: float = 300.0
    init_temperature: float | None = None
    pressure: float = 0.0
    timestep: float = 0.5
    steps: int = 1000
    friction: float = 0.01
    tau_t: float = 50.0
    tau_p: float = 500.0
    chain_length: int = 3
    log_interval: int = 100
    traj_interval: int | None = None
    output: str = "md_output"
    trajectory: str = "trajectory.extxyz"
    seed: int = 0
    skin: float = 0.5
    capacity_multiplier: float = 1.25
    neighbor_backend: str = "auto"
    replicas: int = 1
    progress: bool = True

    def validate(self, where: str = "config") -> MDRunConfig:
        from tace_jax.md.integrators import canonical_ensemble

        def bad(key, msg):
            raise ValueError(f"{where}: key {key!r} {msg}")

        if not self.model:
            bad("model", "is required (path to a saved model)")
        if not self.structure:
            bad("structure", "is required (path to a structure file)")
        if self.dtype not in ("float32", "float64"):
            bad("dtype", f"must be float32 or float64, got {self.dtype!r}")
        try:
            canonical_ensemble(self.ensemble)
        except ValueError as err:
            bad("ensemble", str(err))
        for key in ("timestep", "log_interval", "replicas", "skin", "capacity_multiplier"):
            if not getattr(self, key) > 0:
                bad(key, f"must be > 0, got {getattr(self, key)}")
        if self.steps < 0:
            bad("steps", f"must be >= 0, got {self.steps}")
        if self.temperature < 0:
            bad("temperature", f"must be >= 0, got {self.temperature}")
        return self


def _coerce(field: dataclasses.Field, value, where: str):
    if value is None:
        return None
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    try:
        if kind.startswith("bool"):
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: key {field.name!r}: cannot convert {value!r} ({err})") from err


def load_md_config(path=None, overrides=()) -> MDRunConfig:
    """Read a YAML config (optional) and apply ``key=value`` overrides; validate."""
    data: dict = {}
    where = str(path) if path else "command line"
    if path is not None:
        text = pathlib.Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config must be a mapping of keys to values")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        k, v = item.split("=", 1)
        data[k.strip()] = yaml.safe_load(v)
    fields = {f.name: f for f in dataclasses.fields(MDRunConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    values = {k: _coerce(fields[k], v, where) for k, v in data.items()}
    return MDRunConfig(**values).validate(where)


def run(cfg: MDRunConfig) -> dict:
    """Run the MD described by ``cfg``; returns the summary written to ``summary.json``."""
    import time

    import ase.io
    import numpy as np

    from tace_jax.md.io import load_potential
    from tace_jax.md.runners import Simulation

    pot = load_potential(cfg.model, cfg.dtype)
    try:
        atoms = ase.io.read(cfg.structure, index=cfg.index)
    except Exception as err:
        raise ValueError(f"{cfg.structure}: cannot read frame {cfg.index} ({err})") from err
    out = pathlib.Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    system = [atoms.copy() for _ in range(cfg.replicas)] if cfg.replicas > 1 else atoms
    sim = Simulation(
        pot,
        system,
        ensemble=cfg.ensemble,
        timestep=cfg.timestep,
        temperature=cfg.temperature,
        pressure=cfg.pressure,
        friction=cfg.friction,
        tau_t=cfg.tau_t,
        tau_p=cfg.tau_p,
        chain_length=cfg.chain_length,
        init_temperature=cfg.init_temperature,
        skin=cfg.skin,
        capacity_multiplier=cfg.capacity_multiplier,
        backend=cfg.neighbor_backend,
        dtype=cfg.dtype,
        seed=cfg.seed,
    )
    t0 = time.perf_counter()
    obs = sim.run(
        cfg.steps,
        log_interval=cfg.log_interval,
        trajectory=out / cfg.trajectory,
        traj_interval=cfg.traj_interval,
        logfile=out / "md.log",
        progress=cfg.progress,
    )
    wall = time.perf_counter() - t0
    final = sim.get_atoms()
    ase.io.write(out / "final.extxyz", final, format="extxyz")
    last = obs[-1][0] if sim.batched else obs[-1]
    temps = [(o[0] if sim.batched else o)["temperature"] for o in obs]
    summary = {
        "config": dataclasses.asdict(cfg),
        "num_atoms": len(atoms),
        "steps": cfg.steps,
        "wall_time_s": wall,
        "atom_steps_per_s": len(atoms) * cfg.replicas * cfg.steps / max(wall, 1e-9),
        "mean_temperature": float(np.mean(temps)),
        "final": last,
        "reallocations": sim.reallocations,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="tace-jax md", description="Molecular dynamics with a saved TACE model (jax-md)."
    )
    parser.add_argument("config", nargs="?", help="YAML file with MDRunConfig keys")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--print-config", action="store_true", help="print the defaults")
    args = parser.parse_args(argv)
    if args.print_config:
        print(yaml.safe_dump(dataclasses.asdict(MDRunConfig()), sort_keys=False), end="")
        return 0
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not pathlib.Path(config).exists():
        config, overrides = None, [config, *overrides]
    try:
        cfg = load_md_config(config, overrides)
        summary = run(cfg)
    except (ValueError, FileNotFoundError) as err:
        print(f"tace-jax md: error: {err}", file=sys.stderr)
        return 2
    f = summary["final"]
    print(
        f"done: {summary['steps']} steps of {summary['num_atoms']} atoms in "
        f"{summary['wall_time_s']:.1f} s ({summary['atom_steps_per_s']:.0f} atom-steps/s); "
        f"final T = {f['temperature']:.1f} K, Etot = {f['etot']:.6f} eV; output in {cfg.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
