"""Duck-typed access to a :class:`tace_jax.models.Potential` (or a stand-in with the same API).

The dynamics code needs only: an ``apply_fn(variables, graph, edge_vecs=None) -> {"energy": [G]}``,
the ``variables``, the model ``cutoff`` (Å), the sorted ``atomic_numbers`` and the ``dtype``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ModelParts", "model_parts", "species_of", "cast_floats"]


@dataclasses.dataclass(frozen=True)
class ModelParts:
    """What the dynamics code needs from a potential.

    Attributes:
        apply_fn: ``apply_fn(variables, graph, edge_vecs=None) -> dict`` with ``"energy"`` [G].
        variables: model variables (already in ``dtype``).
        cutoff: Å.
        atomic_numbers: sorted atomic numbers of the model (species index order).
        dtype: computation dtype (``jnp.float32`` or ``jnp.float64``).
        extras: function ``extras(num_nodes, num_graphs) -> dict`` of graph extras the model
            expects (empty for the plain model).
    """

    apply_fn: Callable
    variables: Any
    cutoff: float
    atomic_numbers: tuple
    dtype: Any
    extras: Callable = lambda num_nodes, num_graphs: {}


def _first_attr(obj, names: Sequence[str]):
    for name in names:
        cur = obj
        for part in name.split("."):
            cur = getattr(cur, part, None)
            if cur is None:
                break
        if cur is not None:
            return cur
    return None


def cast_floats(tree, dtype):
    """Cast every floating-point leaf of ``tree`` to ``dtype``."""

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(cast, tree)


def model_parts(potential, dtype=None) -> ModelParts:
    """Extract :class:`ModelParts` from a potential, optionally overriding its dtype.

    Raises:
        TypeError: if the object lacks an apply function, variables, cutoff or element list.
    """
    if isinstance(potential, ModelParts):
        parts = potential
    else:
        apply_fn = _first_attr(potential, ("apply_fn", "model.apply"))
        variables = _first_attr(potential, ("variables", "params"))
        cutoff = _first_attr(potential, ("cutoff", "config.cutoff", "config.r_max"))
        numbers = _first_attr(potential, ("atomic_numbers", "config.atomic_numbers"))
        pdtype = _first_attr(potential, ("dtype",)) or "float32"
        missing = [
            n
            for n, v in (("apply_fn", apply_fn), ("variables", variables), ("cutoff", cutoff))
            if v is None
        ]
        if numbers is None:
            missing.append("atomic_numbers")
        if missing:
            raise TypeError(f"{type(potential).__name__} lacks {missing} needed for dynamics")
        extras = getattr(potential, "graph_extras", None)
        parts = ModelParts(
            apply_fn=apply_fn,
            variables=variables,
            cutoff=float(cutoff),
            atomic_numbers=tuple(int(z) for z in numbers),
            dtype=jnp.dtype(pdtype),
            extras=extras if callable(extras) else (lambda num_nodes, num_graphs: {}),
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
    from tace_jax.data.atoms_graph import species_index

    return np.asarray(species_index(np.asarray(numbers), atomic_numbers, where), np.int32)
