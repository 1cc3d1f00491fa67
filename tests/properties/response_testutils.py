"""Shared jitted functions and finite differences for the response-property tests.

The functions are cached at module level so that every response test file reuses the same
compilations (all test graphs share ``BUDGETS``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.properties import RESPONSE_PROPERTIES, compute_properties
from tace_jax.testing.toy import toy_apply

#: One set of budgets for every response test graph (one compilation per function).
BUDGETS = (64, 192, 3)
INPUT_NAMES = (
    "electric_field",
    "magnetic_field",
    "initial_collinear_magmoms",
    "initial_noncollinear_magmoms",
)


#: Everything at once: the geometric derivatives and every response property.
ALL = ("energy", "forces", "virials", "stress", "atomic_virials", *RESPONSE_PROPERTIES)


@functools.cache
def props_fn(props: tuple[str, ...] = ALL, method: str = "edges"):
    """Jitted ``(variables, graph) -> dict`` of ``props`` for the toy potential."""
    return jax.jit(
        functools.partial(compute_properties, toy_apply, properties=props, method=method)
    )


@jax.jit
def energy_fn(variables, graph):
    """Per-graph toy energies ``[G]``."""
    return toy_apply(variables, graph)["energy"]


def as_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def central_fd(f, x, rows: int, h: float = 1e-5) -> np.ndarray:
    """``∂f/∂x`` by central differences for the first ``rows`` rows of ``x``.

    Returns an array of shape ``(rows, *x.shape[1:], *f(x).shape)``.
    """
    x = np.asarray(x, np.float64)
    cols = int(np.prod(x.shape[1:], dtype=int))
    out = []
    for i in range(rows):
        for c in range(cols):
            dx = np.zeros(x.size)
            dx[i * cols + c] = h
            dx = dx.reshape(x.shape)
            out.append((np.asarray(f(x + dx)) - np.asarray(f(x - dx))) / (2 * h))
    return np.stack(out).reshape(rows, *x.shape[1:], *out[0].shape)


def with_extra(graph, name: str, value):
    """``graph`` with ``graph.extras[name]`` replaced."""
    return graph.replace(extras={**graph.extras, name: jax.numpy.asarray(value)})


def with_inputs(graph, seed: int = 0, junk: bool = False, names=INPUT_NAMES):
    """``graph`` with random fields (per real graph) and moments (per real node) in ``extras``.

    Padding rows are 0, or random junk with ``junk=True`` (it must not change any result).
    """
    rng = np.random.default_rng(seed)
    gm, nm = np.asarray(graph.graph_mask), np.asarray(graph.node_mask)
    g, n = graph.num_graphs, graph.num_nodes
    draws = {
        "electric_field": (0.4 * rng.normal(size=(g, 3)), gm[:, None]),
        "magnetic_field": (0.4 * rng.normal(size=(g, 3)), gm[:, None]),
        "initial_collinear_magmoms": (rng.normal(size=n), nm),
        "initial_noncollinear_magmoms": (0.5 * rng.normal(size=(n, 3)), nm[:, None]),
    }
    extras = dict(graph.extras or {})
    for name in names:
        x, mask = draws[name]
        extras[name] = jnp.asarray(x if junk else np.where(mask, x, 0.0))
    return graph.replace(extras=extras)
