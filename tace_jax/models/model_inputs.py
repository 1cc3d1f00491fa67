"""How the TACE model reads its inputs beyond geometry from ``graph.extras``.

Names, shapes and dtypes follow the registry :data:`tace_jax.data.fields.INPUTS`
(docs/theory.md §2.2, §2.5, §2.10): per-graph inputs are ``[G, ...]``, per-atom ones
``[N, ...]``. The model reads exactly the
names of :attr:`TACEConfig.input_names`; a missing one raises ``KeyError`` at trace time.

Value checks (a level outside ``[0, num_levels)``, an embedding index outside
``[0, num_embeddings)``, NaN) are the input assembler's job: a jitted model cannot raise on
values. Inside the model an out-of-range integer embeds as zeros, and an out-of-range level
reads the last row of the E0/σ/μ tables and no readout head.

Floating inputs (fields, charges, moments) enter without casts to integers or
``stop_gradient``, so derivatives with respect to ``graph.extras`` entries (polarization,
magnetization, magnetic forces, …) are exact.
"""

from __future__ import annotations

import jax.numpy as jnp

from tace_jax.data.fields import INPUTS
from tace_jax.data.graph import Graph

__all__ = ["read_input", "node_input"]


def read_input(graph: Graph, name: str, dtype=None) -> jnp.ndarray:
    """``graph.extras[name]`` as ``[G, ...]`` or ``[N, ...]`` (floats cast to ``dtype``).

    Raises:
        KeyError: the input is missing.
        ValueError: wrong shape.
    """
    spec = INPUTS[name]
    per_node, tail, integer = spec.per_node, spec.shape, spec.kind == "int"
    extras = graph.extras or {}
    if name not in extras:
        raise KeyError(
            f"TACE: the model needs graph.extras[{name!r}] "
            f"({'per atom' if per_node else 'per graph'}, shape "
            f"{['G', 'N'][per_node]}{''.join(f', {d}' for d in tail)}); "
            f"given: {sorted(extras)}"
        )
    x = jnp.asarray(extras[name])
    lead = graph.num_nodes if per_node else graph.num_graphs
    if x.shape == (lead, 1) and not tail:
        x = x[:, 0]
    if x.shape != (lead, *tail):
        raise ValueError(
            f"TACE: graph.extras[{name!r}] must have shape {(lead, *tail)} "
            f"({'atoms' if per_node else 'graphs'} of the padded batch), got {x.shape}"
        )
    if integer:
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(f"TACE: graph.extras[{name!r}] must be integer, got {x.dtype}")
        return x
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(dtype or jnp.float32)
    return x.astype(dtype) if dtype is not None else x


def node_input(graph: Graph, name: str, dtype=None) -> jnp.ndarray:
    """:func:`read_input` broadcast to atoms (``[N, ...]``)."""
    x = read_input(graph, name, dtype)
    return x if INPUTS[name].per_node else x[graph.node_graph]
