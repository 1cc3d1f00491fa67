"""The parts of a potential (:class:`~tace_jax.inference.protocol.PotentialProtocol`) the dynamics
code uses: ``apply_fn``, ``variables``, ``cutoff``, ``atomic_numbers``, ``dtype`` and the
model inputs it reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.data.atoms_graph import species_index
from tace_jax.ops import cast_floats

from .protocol import PROTOCOL_MEMBERS, PotentialProtocol, input_limits_of, input_names_of

__all__ = ["ModelParts", "model_parts", "species_of"]


@dataclasses.dataclass(frozen=True)
class ModelParts:
    """What the dynamics code needs from a potential.

    Attributes:
        apply_fn: ``apply_fn(variables, graph, edge_vecs=None) -> dict`` with ``"energy"`` [G].
        variables: model variables (already in ``dtype``).
        cutoff: Å.
        atomic_numbers: sorted atomic numbers of the model (species index order).
        dtype: computation dtype (``jnp.float32`` or ``jnp.float64``).
        input_names: model inputs read from ``graph.extras`` (empty: geometry only).
        input_limits: exclusive upper bounds of integer inputs (``{"level": 3}``).
    """

    apply_fn: Callable
    variables: Any
    cutoff: float
    atomic_numbers: tuple
    dtype: Any
    input_names: tuple = ()
    input_limits: dict = dataclasses.field(default_factory=dict)


def model_parts(potential, dtype=None) -> ModelParts:
    """:class:`ModelParts` of a potential, optionally computing in another ``dtype``.

    Raises:
        TypeError: ``potential`` does not satisfy
            :class:`~tace_jax.inference.protocol.PotentialProtocol`.
        ValueError: float64 requested while ``jax_enable_x64`` is off.
    """
    if isinstance(potential, ModelParts):
        parts = potential
    elif isinstance(potential, PotentialProtocol):
        parts = ModelParts(
            apply_fn=potential.apply_fn,
            variables=potential.variables,
            cutoff=float(potential.cutoff),
            atomic_numbers=tuple(int(z) for z in potential.atomic_numbers),
            dtype=jnp.dtype(potential.dtype),
            input_names=input_names_of(potential),
            input_limits=input_limits_of(potential),
        )
    else:
        missing = [n for n in PROTOCOL_MEMBERS if not hasattr(potential, n)]
        raise TypeError(
            f"{type(potential).__name__} is not a potential: it lacks {missing} "
            "(see tace_jax.inference.protocol.PotentialProtocol)"
        )
    dtype = parts.dtype if dtype is None else jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "float64 requested but jax_enable_x64 is off: call "
            "jax.config.update('jax_enable_x64', True) before building the potential"
        )
    return dataclasses.replace(parts, variables=cast_floats(parts.variables, dtype), dtype=dtype)


def species_of(numbers, atomic_numbers, where: str = "structure") -> np.ndarray:
    """Indices of ``numbers`` in the model's ``atomic_numbers``; clear error for unknown ones."""
    return np.asarray(species_index(np.asarray(numbers), atomic_numbers, where), np.int32)
