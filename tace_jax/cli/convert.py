"""``tace-jax convert``: a PyTorch TACE 0.1.0 checkpoint → reference ``npz`` + ``json``.

Usage::

    tace-jax convert CHECKPOINT OUT_PREFIX [--config CFG] [--save MODEL]
                     [--dtype float64] [--no-ema]

writes ``OUT_PREFIX.npz`` and ``OUT_PREFIX.json`` (readable by
``tace_jax.Potential.from_reference``) and, with ``--save``, a tace_jax Potential file.
Needs torch: ``pip install tace-jax[torch]``. ``--save`` with the default ``--dtype float64``
needs 64-bit JAX (``JAX_ENABLE_X64=1 tace-jax convert ...``).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="tace-jax convert",
        description="Convert a PyTorch TACE 0.1.0 checkpoint (.ckpt, -state.pt, -whole.pt, "
        "state_dict .pt) into tace_jax reference files.",
    )
    ap.add_argument("checkpoint", help="the torch checkpoint (trusted file: it is unpickled)")
    ap.add_argument("out_prefix", help="writes OUT_PREFIX.npz and OUT_PREFIX.json")
    ap.add_argument(
        "--config",
        default=None,
        help="model config (training yaml, model 'config' section or fixture json); "
        "required for a bare state_dict, overrides the checkpoint's config otherwise",
    )
    ap.add_argument("--save", default=None, metavar="MODEL", help="also write a Potential file")
    ap.add_argument(
        "--dtype",
        default="float64",
        choices=["float32", "float64"],
        help="dtype of the --save file (float64 needs 'JAX_ENABLE_X64=1 tace-jax convert')",
    )
    ap.add_argument("--no-ema", action="store_true", help="ignore EMA weights of a .ckpt")
    return ap


def main(argv=None) -> int:
    """Run the converter; returns the exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from tace_jax.inference.potential import as_compute_dtype
    from tace_jax.models.torch_import import convert_torch_checkpoint

    from .main import X64_HINT

    try:
        if args.save:
            as_compute_dtype(args.dtype)  # float64 (the default) needs 64-bit JAX
    except RuntimeError as e:
        print(f"tace-jax convert: --save: {e}\n{X64_HINT.format(cmd='convert')}", file=sys.stderr)
        return 2

    prefix = args.out_prefix[:-4] if args.out_prefix.endswith(".npz") else args.out_prefix
    try:
        npz, js = convert_torch_checkpoint(
            args.checkpoint, prefix + ".npz", prefix + ".json", args.config, not args.no_ema
        )
    except (ImportError, FileNotFoundError, ValueError, NotImplementedError) as e:
        print(f"tace-jax convert: {e}", file=sys.stderr)
        return 1
    print(f"wrote {npz} and {js}")
    if args.save:
        from tace_jax.inference import Potential

        try:
            pot = Potential.from_reference(npz, js, dtype=args.dtype)
        except (ValueError, NotImplementedError) as e:
            print(f"tace-jax convert: {e}", file=sys.stderr)
            return 1
        pot.save(args.save)
        print(f"wrote {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
