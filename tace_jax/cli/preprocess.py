"""``tace-jax preprocess DATA... --out DIR``: neighbour lists, labels and statistics into shards.

Reads each data file (one at a time, so only one file is in memory), computes the neighbour
lists at the model cutoff and writes HDF5 shards (:mod:`tace_jax.data.shards`) that
``train_dir`` runs stream from (:mod:`tace_jax.data.streaming`, docs/theory.md §5).

Examples::

    tace-jax preprocess water_*.xyz --out shards/water --cutoff 5.0
    tace-jax preprocess bundled:rmd17_ethanol_train --out shards/eth --config train.yaml
    # then, in train.yaml:  train_dir: shards/eth   (instead of train_file)

With ``--config`` the label keys, ``data_options`` (units, level names, ...) and
``model.cutoff`` of that training config are used, so the shards hold exactly the structures
``train_file`` would give.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tace-jax preprocess",
        description="Preprocess data files into on-disk shards for streaming training.",
    )
    p.add_argument("data", nargs="+", help="data files (extxyz/xyz/npz/db, or bundled:<name>)")
    p.add_argument("--out", required=True, help="output directory (must hold no shards)")
    p.add_argument("--cutoff", type=float, help="neighbour cutoff, Å (default: the config's)")
    p.add_argument("--config", help="training YAML: label keys, data_options, model.cutoff")
    p.add_argument("--shard-size", type=int, default=1024, help="structures per shard")
    for label in ("energy", "forces", "stress", "virials"):
        p.add_argument(f"--{label}-key", help=f"name of the {label} label (default: {label})")
    return p


def _reader(args):
    """``(cutoff, read(path) -> list[Structure])`` from the flags and the optional config."""
    from tace_jax.data import read_structures
    from tace_jax.train.prepare import read_levelled, read_options, resolve_path

    keys = {f"{k}_key": getattr(args, f"{k}_key") for k in ("energy", "forces", "stress")}
    keys["virials_key"] = args.virials_key
    keys = {k: v for k, v in keys.items() if v is not None}
    if args.config is None:
        if args.cutoff is None:
            raise SystemExit("tace-jax preprocess: give --cutoff or --config")
        return args.cutoff, lambda p: read_structures(resolve_path(p), **keys)
    from tace_jax.models import TACEConfig
    from tace_jax.train.config import load_config

    cfg = load_config(args.config)
    options = {**read_options(cfg), **keys}
    options = {k: v for k, v in options.items() if not k.endswith("_indices")}
    cutoff = args.cutoff
    if cutoff is None:
        cutoff = cfg.model.get("cutoff", TACEConfig.__dataclass_fields__["cutoff"].default)
    return float(cutoff), lambda p: read_levelled(resolve_path(p), None, **options)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from tace_jax.data.shard_writer import ShardWriter

    cutoff, read = _reader(args)
    t0 = time.time()
    writer = ShardWriter(args.out, cutoff, args.shard_size)
    for path in args.data:
        structures = read(path)
        writer.add(structures)
        print(f"{path}: {len(structures)} structures", flush=True)
        del structures
    m = writer.close()
    size = sum(f.stat().st_size for f in Path(args.out).glob("shard_*.h5"))
    print(
        f"wrote {m['num_structures']} structures ({m['num_atoms']} atoms, {m['num_edges']} "
        f"edges at cutoff {cutoff} Å, elements {m['elements']}, labels {m['labels']}) into "
        f"{len(m['shards'])} shards, {size / 2**20:.1f} MiB, in {time.time() - t0:.1f} s -> "
        f"{args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
