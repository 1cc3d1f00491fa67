"""Fixed model inputs of one structure for the jax-md graph (``graph.extras``).

The inputs a model reads (``electric_field``, ``level``, ``charges``, …; registry in
:mod:`tace_jax.data.fields`) are assembled by the one input assembler,
:func:`tace_jax.data.inputs.read_inputs`: keyword arguments win over ``atoms.info`` (per-graph
inputs) / ``atoms.arrays`` (per-node inputs), then the documented default; an input without a
default must be given. They stay fixed during the run, e.g. MD under a constant external field.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from tace_jax.data.fields import INPUTS
from tace_jax.data.inputs import present_inputs, read_inputs

__all__ = ["collect_inputs", "pad_inputs"]


def collect_inputs(
    atoms,
    names: Sequence[str],
    overrides: Mapping,
    where: str = "atoms",
    limits: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """The model inputs ``names`` of one structure (numpy, unpadded; per-graph ``[1, ...]``,
    per-node ``[N, ...]``); inputs given but not read by the model are ignored with a warning.

    Raises:
        TypeError: a keyword that is not a model input at all.
        DataError: (a ``ValueError``) a required input missing, a wrong shape, a non-integer,
            out-of-range (``limits``) or non-finite value; the message names ``where`` and the
            input.
    """
    values = read_inputs(atoms, tuple(names), overrides, where, limits)
    unused = sorted(present_inputs(atoms, overrides) - set(names))
    if unused:
        warnings.warn(
            f"{where}: inputs {unused} are ignored: this model does not use them (it uses "
            f"{list(names) or 'none'})",
            stacklevel=3,
        )
    return values


def pad_inputs(values: Mapping, num_atoms: int, dtype) -> dict:
    """Pad input values for the jax-md graph: one structure of ``num_atoms`` nodes plus one
    padding node and one padding graph, whose rows are 0.

    ``values`` hold per-graph inputs as ``[1, ...]`` (or without the leading axis) and per-node
    inputs as ``[num_atoms, ...]``; they may be traced. Float inputs are cast to ``dtype``,
    integer ones to ``int32``.
    """
    extras = {}
    for name, value in values.items():
        spec = INPUTS[name]
        dt = dtype if spec.kind == "float" else jnp.int32
        v = jnp.asarray(value, dt)
        if not spec.per_node and v.ndim == len(spec.shape):
            v = v[None]
        extras[name] = jnp.concatenate([v, jnp.zeros((1, *v.shape[1:]), dt)])
    return extras
