"""``tace-jax train CONFIG.yaml [key=value ...]``: train a TACE model.

Examples::

    tace-jax train train.yaml
    tace-jax train train.yaml lr=1e-3 model.num_channel=32 max_time=3600
    tace-jax train --schema            # JSON schema of every config key
    tace-jax train train.yaml --print-config
    JAX_ENABLE_X64=1 tace-jax train train.yaml dtype=float64   # float64 needs 64-bit JAX

Several processes (hosts), see docs/multihost.md; the same command on every process::

    tace-jax train train.yaml --coordinator node0:12345 --num-processes 2 --process-id 0
    tace-jax train train.yaml --coordinator node0:12345 --num-processes 2 --process-id 1
    srun -n 8 tace-jax train train.yaml     # SLURM / Open MPI / TPU slices: auto-detected

Only process 0 writes to ``output_dir``. If a process dies, the others stop instead of
waiting: JAX's coordination service terminates them ("another task died"), or a failed
collective ends them here with exit status 1. Restart all of them to resume from the last
checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tace-jax train",
        description="Train a TACE model from a YAML config.",
        epilog="Overrides are key=value (values parsed as YAML; dotted keys for model.*).",
    )
    p.add_argument("config", nargs="?", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument("--schema", action="store_true", help="print the config JSON schema and exit")
    p.add_argument(
        "--print-config", action="store_true", help="print the validated config (YAML) and exit"
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="ignore existing checkpoints in output_dir (resume=false)",
    )
    d = p.add_argument_group("several processes (hosts); default: from SLURM/Open MPI/TPU")
    d.add_argument("--coordinator", metavar="ADDR", help="host:port of process 0")
    d.add_argument("--num-processes", type=int, metavar="N", help="processes in the run")
    d.add_argument("--process-id", type=int, metavar="K", help="rank of this process")
    d.add_argument(
        "--heartbeat-timeout",
        type=int,
        default=100,
        metavar="S",
        help="seconds after which a silent process counts as dead (default 100)",
    )
    return p


def _start_processes(args) -> str | None:
    """Start ``jax.distributed`` (explicit flags or a detected cluster) before any JAX use.

    CPU-only runs use gloo for the cross-process collectives; this is a process-wide JAX
    option, so it is set here, in the entry point, and only for multi-process runs."""
    from tace_jax.train import distributed

    explicit = any(v is not None for v in (args.coordinator, args.num_processes, args.process_id))
    if not explicit and distributed.cluster_environment() is None:
        return None
    if explicit and args.num_processes == 1:
        return distributed.initialize(args.coordinator, 1, args.process_id)  # checks only
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU backend only
    return distributed.initialize(
        args.coordinator,
        args.num_processes,
        args.process_id,
        heartbeat_timeout=args.heartbeat_timeout,
    )


def _abort(msg: str, code: int = 1) -> None:
    """Print ``msg`` and leave at once: a multi-process run whose peer is gone would otherwise
    wait for it in JAX's shutdown barrier."""
    print(msg, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def main(argv=None) -> int:
    args = _parser().parse_intermixed_args(argv)
    from tace_jax.data import DataError
    from tace_jax.train.config import ConfigError, load_config, train_config_schema

    if args.schema:
        print(json.dumps(train_config_schema(), indent=2))
        return 0
    if args.config is None:
        _parser().print_usage(sys.stderr)
        print("tace-jax train: a config file is required", file=sys.stderr)
        return 2
    overrides = list(args.overrides) + (["resume=false"] if args.fresh else [])
    try:
        started = _start_processes(args)
    except (ValueError, RuntimeError) as e:
        print(f"tace-jax train: error: cannot start the multi-process run: {e}", file=sys.stderr)
        return 2
    from tace_jax.train import distributed

    where = started and f"process {distributed.process_index()} of {distributed.process_count()}"
    try:
        cfg = load_config(args.config, overrides)
        if args.print_config:
            import yaml

            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        if not (cfg.train_file or cfg.train_files or cfg.train_dir):
            raise ConfigError(
                f"{args.config}: one of the config keys 'train_file', 'train_files' or "
                "'train_dir' is required"
            )
        from tace_jax.train.loop import fit

        result = fit(cfg)
    except (ConfigError, DataError, FileNotFoundError) as e:
        if started:
            _abort(f"tace-jax train: error ({where}): {e}", 2)
        print(f"tace-jax train: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not started:
            raise
        import traceback

        traceback.print_exc()
        hint = (
            "another process of the run died or cannot be reached; stop all processes and "
            "start them again (training resumes from the last checkpoint)"
            if distributed.is_peer_failure(e)
            else "the other processes will stop as well"
        )
        _abort(f"tace-jax train: error ({where}): {type(e).__name__}: {str(e)[:400]}\n{hint}")
    print(f"model: {result.model_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
