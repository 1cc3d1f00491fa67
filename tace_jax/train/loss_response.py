"""Response loss terms: polarization, polarizability, Born charges, dipole, Hessian rows.

Each term compares a model prediction with a label of the batch (``graph.targets``):

=================================  =====================================  ===================
term                               prediction                             label
=================================  =====================================  ===================
``polarization``                   P = −∂E/∂ℰ ``[G, 3]``                  ``polarization``
``conservative_polarizability``    α = ∂P/∂ℰ ``[G, 3, 3]``                ``polarizability``
``born_effective_charges``         Z* = ∂P/∂x ``[N, 3, 3]``               ``born_charges``
``dipole``                         P (field model) or ``direct_dipole``   ``dipole``
``polarizability``                 α (field model) or                     ``polarizability``
                                   ``direct_polarizability``
``hessian``                        random rows of ∂²E/∂x∂x                ``hessian``
=================================  =====================================  ===================

The conservative ones are derivatives of the one energy (docs/theory.md §3; arXiv 2509.14961),
so their loss is trained by differentiating through the autodiff derivative (double
backprop). A *field model* is one that reads the ``electric_field`` input (it is then in
``graph.extras``): for it the ``dipole`` and ``polarizability`` labels train P and α; without
the field they train the direct heads (``direct_dipole`` is in Debye and is converted to e·Å
here, docs/theory.md §2.10). The polarizability label is one label (``polarizability``, e·Å²/V)
whichever term reads it.

Periodic polarization (and a field model's periodic dipole) is defined modulo the quantum
``e·R``: the difference P̂ − P (a cell dipole, e·Å) is folded to the branch nearest zero with
:func:`tace_jax.ops.fold_polarization` before the pointwise loss (docs/theory.md §3).

Hessian: ``num_samples`` random rows (atom, Cartesian direction) per structure, HORM style
(docs/theory.md §3, :func:`tace_jax.properties.hessian_rows`), compared with the matching rows of
the batch label ``hessian [N, 3, N, 3]`` (block diagonal, eV/Å²).

Every term is a masked sum over labelled entries (``has_<label>``) times the per-structure
weight; counts are entries (3 per structure for P, 9 for α, 9 per atom for Z*, 3·N per
Hessian row).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tace_jax.data.graph import Graph
from tace_jax.ops import fold_polarization

__all__ = [
    "DEBYE_PER_E_ANGSTROM",
    "RESPONSE_LABELS",
    "RESPONSE_TERMS",
    "fold_cell_dipole",
    "hessian_key",
    "is_field_model",
    "prediction_name",
    "required_properties",
    "response_term",
    "sample_hessian_rows",
    "term_predictions",
]

#: Response loss terms (see the module docstring), in a fixed order.
RESPONSE_TERMS = (
    "polarization",
    "conservative_polarizability",
    "born_effective_charges",
    "dipole",
    "polarizability",
    "hessian",
)
#: The batch label each term reads.
RESPONSE_LABELS = {
    "polarization": "polarization",
    "conservative_polarizability": "polarizability",
    "born_effective_charges": "born_charges",
    "dipole": "dipole",
    "polarizability": "polarizability",
    "hessian": "hessian",
}
#: ``direct_dipole`` is in Debye (docs/theory.md §2.10): Debye per e·Å.
DEBYE_PER_E_ANGSTROM = 4.8032047
_FOLDED = ("polarization", "dipole")


def is_field_model(graph: Graph) -> bool:
    """Whether the batch is for a field model (``electric_field`` in ``graph.extras``)."""
    return "electric_field" in (graph.extras or {})


def prediction_name(term: str, field_model: bool) -> str:
    """The prediction a response term is compared with (a ``compute_properties`` name)."""
    if term == "dipole":
        return "polarization" if field_model else "direct_dipole"
    if term == "polarizability":
        return "conservative_polarizability" if field_model else "direct_polarizability"
    return term


def required_properties(terms, graph: Graph) -> tuple[str, ...]:
    """The :func:`~tace_jax.properties.compute_properties` names the loss ``terms`` need.

    Non-response names pass through; ``hessian`` needs none (rows are computed separately);
    direct heads are always returned by the model.
    """
    field = is_field_model(graph)
    out = []
    for t in terms:
        if t == "hessian":
            continue
        p = prediction_name(t, field) if t in RESPONSE_TERMS else t
        if not p.startswith("direct_") and p not in out:
            out.append(p)
    return tuple(out)


def fold_cell_dipole(diff, graph: Graph):
    """Fold a cell-dipole difference ``[G, 3]`` (e·Å) into the quantum ``e·R`` of each
    periodic graph (unchanged for molecules): :func:`tace_jax.ops.fold_polarization` on the
    per-volume difference, times the volume."""
    vol = jnp.abs(jnp.linalg.det(graph.cell.astype(diff.dtype)))
    periodic = jnp.any(graph.pbc, axis=-1) & (vol > 1e-8)
    safe = jnp.where(periodic, vol, 1.0)[:, None]
    folded = fold_polarization(diff / safe, graph.cell, graph.pbc) * safe
    return jnp.where(periodic[:, None], folded, diff)


def _prediction(term: str, pred, graph: Graph):
    name = prediction_name(term, is_field_model(graph))
    if name not in pred:
        hint = (
            " (a direct head: add it to model.targets, or give the model the "
            "electric_field input so that the conservative response is trained)"
            if name.startswith("direct_")
            else ""
        )
        raise KeyError(f"loss term {term!r} needs the prediction {name!r}{hint}")
    p = pred[name]
    return p / DEBYE_PER_E_ANGSTROM if name == "direct_dipole" else p


def term_predictions(terms, pred, graph: Graph) -> dict:
    """``{term: prediction in the label's units}`` for the response terms among ``terms``
    (not ``hessian``), e.g. ``dipole`` from ``direct_dipole`` in e·Å; for metrics."""
    return {t: _prediction(t, pred, graph) for t in terms if t in RESPONSE_TERMS and t != "hessian"}


def response_term(term: str, pred, graph: Graph, w_g, mask_g, pw, hessian_rows=None):
    """One response term of :func:`tace_jax.train.loss.loss_sums`.

    Args:
        term: a name of :data:`RESPONSE_TERMS`.
        pred: predictions (``compute_properties`` output).
        graph: the batch with targets.
        w_g: ``[G]`` weight × label mask (0 on padding).
        mask_g: ``[G]`` bool label mask.
        pw: pointwise loss ``err -> loss``.
        hessian_rows: for ``hessian``, the :func:`~tace_jax.properties.hessian_rows` output.

    Returns:
        ``(loss sum, count, error, error mask)``; the error is what the metrics average.
    """
    t = graph.targets
    dtype = graph.positions.dtype
    label = t[RESPONSE_LABELS[term]]
    if term == "born_effective_charges":
        node_m = jnp.logical_and(mask_g[graph.node_graph], graph.node_mask)
        node_w = w_g[graph.node_graph]
        err = jnp.where(node_m[:, None, None], _prediction(term, pred, graph) - label, 0.0)
        loss = jnp.sum(node_w[:, None, None] * pw(err))
        emask = jnp.broadcast_to(node_m[:, None, None], err.shape)
        return loss, 9 * jnp.sum(node_m), err, emask.astype(dtype)
    if term == "hessian":
        if hessian_rows is None:
            raise ValueError("loss term 'hessian' needs the sampled hessian_rows")
        rows, atom, xyz = hessian_rows["rows"], hessian_rows["atom"], hessian_rows["xyz"]
        ref = label[atom, xyz]  # [G, S, N, 3]
        m = hessian_rows["mask"] & mask_g[:, None]  # [G, S]
        same = graph.node_graph[None, None, :] == jnp.arange(graph.num_graphs)[:, None, None]
        entry = m[:, :, None] & same & graph.node_mask[None, None, :]  # [G, S, N]
        err = jnp.where(entry[..., None], rows - ref, 0.0)
        loss = jnp.sum(w_g[:, None, None, None] * pw(err))
        emask = jnp.broadcast_to(entry[..., None], err.shape)
        return loss, 3 * jnp.sum(entry), err, emask.astype(dtype)
    diff = _prediction(term, pred, graph) - label
    if term in _FOLDED and (term == "polarization" or is_field_model(graph)):
        diff = fold_cell_dipole(diff, graph)
    extra = (None,) * (diff.ndim - 1)
    err = jnp.where(mask_g[(slice(None), *extra)], diff, 0.0)
    loss = jnp.sum(w_g[(slice(None), *extra)] * pw(err))
    size = 3 if diff.ndim == 2 else 9
    emask = jnp.broadcast_to(mask_g[(slice(None), *extra)], err.shape)
    return loss, size * jnp.sum(mask_g), err, emask.astype(dtype)


def sample_hessian_rows(apply_fn, variables, graph: Graph, key, num_samples: int = 2) -> dict:
    """:func:`tace_jax.properties.hessian_rows` kept differentiable (training)."""
    from tace_jax.properties import hessian_rows

    return hessian_rows(apply_fn, variables, graph, key, num_samples, training=True)


def hessian_key(step) -> jax.Array:
    """The PRNG key of the Hessian rows sampled at optimiser ``step``."""
    return jax.random.fold_in(jax.random.key(20250914), step)
