"""``tace-jax train CONFIG.yaml [key=value ...]``: train a TACE model.

Examples::

    tace-jax train train.yaml
    tace-jax train train.yaml lr=1e-3 model.num_channel=32 max_time=3600
    tace-jax train --schema            # JSON schema of every config key
    tace-jax train train.yaml --print-config
    JAX_ENABLE_X64=1 tace-jax train train.yaml dtype=float64   # float64 needs 64-bit JAX
"""

from __future__ import annotations

import argparse
import json
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
    return p


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
        cfg = load_config(args.config, overrides)
        if args.print_config:
            import yaml

            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        if not cfg.train_file:
            raise ConfigError(f"{args.config}: config key 'train_file' is required")
        from tace_jax.train.loop import fit

        result = fit(cfg)
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"tace-jax train: error: {e}", file=sys.stderr)
        return 2
    print(f"model: {result.model_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
