"""``tace-jax``: the command-line entry point.

Usage: ``tace-jax <command> [options]``. Subcommands::

    tace-jax train CONFIG.yaml [key=value ...]     train a model (``--schema`` lists the keys)
    tace-jax eval MODEL DATA [--out parity.png]    errors of a saved model on a data file
    tace-jax quickstart [--output-dir DIR]         the README main job (bundled rMD17 ethanol)
    tace-jax md ...                                molecular dynamics (tace_jax.cli.md)
    tace-jax vib ...                               vibrational analysis (tace_jax.cli.vib)
    tace-jax spectrum MODEL STRUCTURE ...          IR/Raman spectra (tace_jax.cli.spectrum)
    tace-jax convert CKPT OUT_PREFIX [--save MODEL] PyTorch TACE 0.1.0 .ckpt/.pt -> tace_jax

Each subcommand has its own ``--help``.

float64: JAX computes in 32 bits unless 64-bit mode is on, and tace_jax never switches it
itself. The user asks for it with JAX's own environment variable, e.g.
``JAX_ENABLE_X64=1 tace-jax eval model.tace data.xyz``; without it a float64 request (a float64
model, ``dtype: float64`` training) fails with an error that says so.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["X64_HINT", "main"]

X64_HINT = (
    "float64 needs 64-bit JAX: run 'JAX_ENABLE_X64=1 tace-jax {cmd} ...' (or ask for float32)"
)

_COMMANDS = {
    "train": ("tace_jax.cli.train", "train a model from a YAML config"),
    "eval": ("tace_jax.cli.eval", "evaluate a saved model on a data file"),
    "preprocess": ("tace_jax.cli.preprocess", "neighbour lists + labels into on-disk shards"),
    "quickstart": ("tace_jax.main_job", "train + evaluate a small model on bundled data"),
    "md": ("tace_jax.cli.md", "run molecular dynamics with a saved model"),
    "vib": ("tace_jax.cli.vib", "vibrational analysis with a saved model"),
    "convert": ("tace_jax.cli.convert", "convert a PyTorch TACE 0.1.0 checkpoint (needs torch)"),
    "spectrum": ("tace_jax.cli.spectrum", "IR/Raman spectra from MD and/or harmonic analysis"),
}


def _usage() -> str:
    lines = ["usage: tace-jax <command> [options]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in _COMMANDS.items()]
    lines += [
        "",
        "float64 models and training need 64-bit JAX: JAX_ENABLE_X64=1 tace-jax <command> ...",
        "",
        "Run 'tace-jax <command> --help' for the options of a command.",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Dispatch to ``<module>.main(argv)`` of the subcommand (imported lazily)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from tace_jax import __version__

        print(f"tace-jax {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in _COMMANDS:
        print(f"tace-jax: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = _COMMANDS[cmd][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            print(
                f"tace-jax {cmd}: not available in this installation ({module_name} missing)",
                file=sys.stderr,
            )
            return 2
        raise
    from tace_jax.data.errors import DataError
    from tace_jax.models.format import PotentialFormatError
    from tace_jax.train.config import ConfigError

    try:
        rc = module.main(rest)
    except (DataError, ConfigError, PotentialFormatError) as e:  # bad input: no traceback
        print(f"tace-jax {cmd}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
