"""``tace-jax md CONFIG.yaml [key=value ...]``: molecular dynamics with a saved model.

The YAML file holds the keys of :class:`MDRunConfig` (``--print-config`` prints the defaults);
``key=value`` arguments override them. Outputs go to ``output``: ``md.log`` (thermodynamics),
the trajectory (extxyz, or ASE ``.traj``), ``final.extxyz`` and ``summary.json``.

When a health check (:mod:`tace_jax.md.health`) fails, the command exits with status 3 and a
one-line message naming the check, the step and the worst atom; the trajectory keeps the frames
written before the failure and ``restart.extxyz`` holds the last healthy frame. Run again with
``restart=OUTPUT/restart.extxyz`` (or that file as ``structure``) to continue at its step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

import yaml

from tace_jax.md.config import MDConfig
from tace_jax.md.health import SimulationUnstable

__all__ = ["MDRunConfig", "load_md_config", "load_potential", "main", "run"]

#: Keys of ``tace-jax md`` that are not MD options (printed first by ``--print-config``).
_RUN_KEYS = ("model", "structure", "index", "restart", "dtype", "steps", "output", "trajectory")


@dataclasses.dataclass(frozen=True)
class MDRunConfig(MDConfig):
    """Options of ``tace-jax md``: every :class:`~tace_jax.md.config.MDConfig` field (the MD
    options, with the same defaults except ``ensemble``) plus the files of the run.

    Attributes:
        model: ``.tace`` file from ``Potential.save`` (or a reference ``.npz`` + ``.json``).
        structure: any file ASE reads (extxyz, cif, POSCAR, …); ``index`` selects the frame.
            A frame written by ``tace-jax md`` (``info["md_step"]``) continues at its step.
        restart: a restart file (``restart.extxyz`` of a stopped run, or any frame it wrote):
            replaces ``structure`` (last frame); the run continues at its ``md_step``.
        dtype: ``float32`` or ``float64`` (needs 64-bit JAX, ``JAX_ENABLE_X64=1``).
        ensemble: as in :class:`~tace_jax.md.config.MDConfig`; default ``nvt`` here.
        steps: number of MD steps.
        output: output folder; ``trajectory``: trajectory file name in it.
        replicas: > 1 runs that many copies with different velocity seeds (vmapped).
        progress: show a progress bar.
    """

    model: str = ""
    structure: str = ""
    index: int = -1
    restart: str = ""
    dtype: str = "float32"
    ensemble: str = "nvt"
    steps: int = 1000
    output: str = "md_output"
    trajectory: str = "trajectory.extxyz"
    replicas: int = 1
    progress: bool = True

    def md_config(self) -> MDConfig:
        """The MD options alone."""
        return MDConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(MDConfig)})

    def validate(self, where: str = "config") -> MDRunConfig:
        def bad(key, msg):
            raise ValueError(f"{where}: key {key!r} {msg}")

        if not self.model:
            bad("model", "is required (path to a saved model)")
        if not self.structure and not self.restart:
            bad("structure", "is required (path to a structure file, or give restart)")
        if self.dtype not in ("float32", "float64"):
            bad("dtype", f"must be float32 or float64, got {self.dtype!r}")
        if not self.replicas > 0:
            bad("replicas", f"must be > 0, got {self.replicas}")
        if self.steps < 0:
            bad("steps", f"must be >= 0, got {self.steps}")
        super().validate(where)
        return self

    def as_dict(self) -> dict:
        """The options as a plain dict, the run's keys first."""
        values = dataclasses.asdict(self)
        return {k: values[k] for k in _RUN_KEYS} | {
            k: v for k, v in values.items() if k not in _RUN_KEYS
        }


def load_potential(path, dtype=None):
    """Load a potential from a ``.tace`` file (``Potential.save``) or a reference fixture
    ``.npz`` (with the ``.json`` of the same name next to it; default dtype float64).

    Raises:
        FileNotFoundError: no such file, or a ``.npz`` without its ``.json``.
        ValueError: float64 requested while 64-bit JAX is off.
    """
    import jax

    from tace_jax.inference import Potential

    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    want = dtype or ("float64" if path.suffix == ".npz" else None)
    if want is not None and str(want) == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype float64 needs 64-bit JAX (jax_enable_x64): set JAX_ENABLE_X64=1 in the "
            "environment, or use dtype float32"
        )
    if path.suffix == ".npz":
        cfg = path.with_suffix(".json")
        if not cfg.exists():
            raise FileNotFoundError(f"reference weights {path} need their config {cfg}")
        return Potential.from_reference(path, cfg, dtype=want)
    return Potential.load(path, dtype=dtype)


def _coerce(field: dataclasses.Field, value, where: str):
    if value is None:
        return None
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if "str" in kind and isinstance(value, str) and value.lower() == "auto":
        return "auto"
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
    import ase.io

    from tace_jax.md.run import run_md

    pot = load_potential(cfg.model, cfg.dtype)
    path, index = (cfg.restart, -1) if cfg.restart else (cfg.structure, cfg.index)
    if not pathlib.Path(path).exists():
        raise FileNotFoundError(f"structure file {path!r} does not exist")
    try:
        atoms = ase.io.read(path, index=index)
    except Exception as err:
        raise ValueError(f"{path}: cannot read frame {index} ({err})") from err
    start = int(atoms.info.get("md_step", 0))
    out = pathlib.Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    system = [atoms.copy() for _ in range(cfg.replicas)] if cfg.replicas > 1 else atoms
    res = run_md(
        pot,
        system,
        cfg.steps,
        cfg.md_config(),
        trajectory=out / cfg.trajectory,
        logfile=out / "md.log",
        progress=cfg.progress,
        dtype=cfg.dtype,
        restart=out / "restart.extxyz",
        step=start,
    )
    ase.io.write(out / "final.extxyz", res["simulation"].get_atoms(), format="extxyz")
    keys = ("num_atoms", "steps", "wall_time_s", "atom_steps_per_s", "mean_temperature", "final")
    summary = {"config": cfg.as_dict()} | {k: res[k] for k in keys}
    summary["reallocations"] = res["reallocations"]
    summary["first_step"], summary["last_step"] = start, start + cfg.steps
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
        print(yaml.safe_dump(MDRunConfig().as_dict(), sort_keys=False), end="")
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
    except SimulationUnstable as err:
        traj = pathlib.Path(cfg.output) / cfg.trajectory
        print(f"tace-jax md: error: {err}; trajectory so far in {traj}", file=sys.stderr)
        return 3
    f = summary["final"]
    print(
        f"done: {summary['steps']} steps of {summary['num_atoms']} atoms in "
        f"{summary['wall_time_s']:.1f} s ({summary['atom_steps_per_s']:.0f} atom-steps/s); "
        f"final T = {f['temperature']:.1f} K, Etot = {f['etot']:.6f} eV; output in {cfg.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
