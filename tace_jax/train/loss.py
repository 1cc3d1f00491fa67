"""Weighted, masked training losses (``docs/theory.md`` §5.2).

The loss is ``L = Σ_p w_p L_p`` over the properties ``p`` (energy per atom, forces, stress,
virials per atom). Each term is a masked mean over the labelled entries of the batch:

* energy: graphs, error ``(Ê − E)/N``;
* forces: atoms × xyz, error ``F̂ − F``;
* stress: graphs × 9 components;
* virials: graphs × 9 components, error ``(V̂ − V)/N``;
* response terms (polarization, conservative polarizability, Born effective charges, dipole,
  polarizability, Hessian rows): see :mod:`tace_jax.train.loss_response`.

The per-structure weight ``targets["weight"]`` ([G], 0 on padding) multiplies every term of that
structure; label masks are ``targets["has_<p>"]`` ([G]). Losses are returned as *sums* and
*counts* (:func:`loss_sums`) so that sub-batches on different devices combine into exactly the
mean over the whole step (:func:`combine_loss`).

Loss types: ``"mse"``, ``"mae"`` and ``"huber"`` (torch ``HuberLoss`` form; for forces MACE's
conditional δ: ``δ·{1, 0.7, 0.4, 0.1}`` for ``‖F_ref‖ <100, <200, <300, ≥300`` eV/Å).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp

from tace_jax.data.graph import Graph

from .loss_response import RESPONSE_LABELS, RESPONSE_TERMS, response_term

__all__ = [
    "LOSS_PROPERTIES",
    "LossConfig",
    "combine_loss",
    "conditional_huber_delta",
    "huber",
    "loss_sums",
    "pointwise_loss",
]

#: Properties with a loss term, in a fixed order.
LOSS_PROPERTIES = ("energy", "forces", "stress", "virials", *RESPONSE_TERMS)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Static loss settings (hashable, so it can close over a jitted step).

    Attributes:
        weights: ``{property: weight}`` for ``energy`` (per atom), ``forces``, ``stress``,
            ``virials`` (per atom) and the response terms of :data:`LOSS_PROPERTIES`; zero or
            missing → term off.
        loss_type: ``"mse"``, ``"mae"`` or ``"huber"``.
        huber_delta: δ of the Huber loss.
        hessian_samples: random Hessian rows per structure for the ``hessian`` term.
    """

    weights: tuple[tuple[str, float], ...] = (("energy", 1.0), ("forces", 8.0))
    loss_type: str = "mse"
    huber_delta: float = 0.01
    hessian_samples: int = 2

    def __post_init__(self):
        if isinstance(self.weights, Mapping):
            object.__setattr__(self, "weights", tuple(sorted(self.weights.items())))
        for k, _ in self.weights:
            if k not in LOSS_PROPERTIES:
                raise ValueError(f"LossConfig: unknown loss property {k!r}; use {LOSS_PROPERTIES}")
        if not isinstance(self.hessian_samples, int) or self.hessian_samples < 1:
            raise ValueError(
                f"LossConfig: hessian_samples must be an integer >= 1, got {self.hessian_samples!r}"
            )
        if self.loss_type not in ("mse", "mae", "huber"):
            raise ValueError(
                f"LossConfig: loss_type must be mse, mae or huber, got {self.loss_type!r}"
            )

    @property
    def active(self) -> dict[str, float]:
        """Properties with a non-zero weight."""
        return {k: float(w) for k, w in self.weights if w > 0}


def huber(x, delta):
    """Elementwise Huber loss ``½x²`` for ``|x| < δ`` else ``δ(|x| − ½δ)`` (torch form)."""
    a = jnp.abs(x)
    return jnp.where(a < delta, 0.5 * x * x, delta * (a - 0.5 * delta))


def conditional_huber_delta(ref_forces, delta):
    """MACE's per-atom δ for forces: ``δ·{1, 0.7, 0.4, 0.1}`` by ``‖F_ref‖`` thresholds
    100/200/300 eV/Å. Shape ``[N, 1]``."""
    norm = jnp.linalg.norm(ref_forces, axis=-1, keepdims=True)
    factor = jnp.where(
        norm < 100.0, 1.0, jnp.where(norm < 200.0, 0.7, jnp.where(norm < 300.0, 0.4, 0.1))
    )
    return delta * factor.astype(ref_forces.dtype)


def pointwise_loss(err, loss_type: str, delta):
    """``err²``, ``|err|`` or Huber(err, δ)."""
    if loss_type == "mse":
        return err * err
    if loss_type == "mae":
        return jnp.abs(err)
    return huber(err, delta)


def _is_per_node(graph: Graph, a) -> bool:
    return a.shape[0] == graph.num_nodes and graph.num_nodes != graph.num_graphs


def _node_mask(graph: Graph, name: str):
    """Atoms with ``name`` labels: ``has_<name>`` per graph ([G], broadcast) or per node."""
    has = graph.targets.get(f"has_{name}")
    if has is None:
        return graph.node_mask
    has = jnp.asarray(has)
    return has if _is_per_node(graph, has) else has[graph.node_graph]


def _graph_weight(graph: Graph, name: str):
    """``weight × has_<name> × graph_mask`` per graph ([G], float) and the bool mask."""
    t = graph.targets
    dtype = graph.positions.dtype
    w = jnp.asarray(t.get("weight", jnp.ones(graph.num_graphs)), dtype)
    has = t.get(f"has_{name}")
    if has is not None and _is_per_node(graph, jnp.asarray(has)):
        has = None  # per-node label mask: graphs are masked through the atoms
    mask = graph.graph_mask if has is None else jnp.logical_and(has, graph.graph_mask)
    return w * mask.astype(dtype), mask


def label_name(term: str) -> str:
    """The batch label a loss term reads (``born_effective_charges`` → ``born_charges``)."""
    return RESPONSE_LABELS.get(term, term)


def terms_with_labels(available) -> tuple[str, ...]:
    """Loss terms whose label is among ``available`` (label names, e.g. a loader's)."""
    return tuple(p for p in LOSS_PROPERTIES if label_name(p) in set(available))


def loss_sums(pred: Mapping, graph: Graph, cfg: LossConfig, hessian_rows=None) -> dict:
    """Summed loss terms and error statistics of one (sub-)batch.

    Args:
        pred: predictions with ``energy [G]`` and, for active terms, ``forces [N,3]``,
            ``stress [G,3,3]``, ``virials [G,3,3]``.
        graph: the batch, with ``targets`` as produced by :class:`tace_jax.data.GraphLoader`.
        cfg: loss settings.
        hessian_rows: for the ``hessian`` term, the sampled rows
            (:func:`tace_jax.properties.hessian_rows`).

    Returns:
        dict of scalars: ``loss_<p>`` (sum of weighted pointwise losses), ``count_<p>``
        (number of labelled entries), and for metrics ``sae_<q>``/``sse_<q>``/``n_<q>`` (sum of
        absolute/squared errors, entry count) for ``q`` in ``energy_per_atom``, ``forces``,
        ``stress``, ``virials`` and each active response term (named as the term).
    """
    out = {}
    dtype = graph.positions.dtype
    n_atoms = jnp.maximum(graph.n_node, 1).astype(dtype)
    t = graph.targets
    for name in cfg.active:
        label = label_name(name)
        if label not in t:
            raise KeyError(f"loss term {name!r} is active but the batch has no {label!r} labels")
        w_g, mask_g = _graph_weight(graph, label)
        pw = lambda e: pointwise_loss(e, cfg.loss_type, cfg.huber_delta)  # noqa: E731
        if name in RESPONSE_TERMS:
            loss, count, stat_err, stat_mask = response_term(
                name, pred, graph, w_g, mask_g, pw, hessian_rows
            )
            stat_name = name
        elif name in ("energy",):
            err = (pred["energy"] - t["energy"]) / n_atoms
            err = jnp.where(mask_g, err, 0.0)
            loss, count = jnp.sum(w_g * pw(err)), jnp.sum(mask_g)
            stat_name, stat_err, stat_mask = "energy_per_atom", err, mask_g.astype(dtype)
        elif name == "forces":
            node_w = w_g[graph.node_graph] * graph.node_mask.astype(dtype)
            node_m = jnp.logical_and(_node_mask(graph, "forces"), graph.node_mask)
            err = jnp.where(node_m[:, None], pred["forces"] - t["forces"], 0.0)
            if cfg.loss_type == "huber":
                delta = conditional_huber_delta(t["forces"], cfg.huber_delta)
                pl = huber(err, delta)
            else:
                pl = pw(err)
            loss = jnp.sum(node_w[:, None] * pl)
            count = 3 * jnp.sum(node_m)
            stat_name, stat_err = "forces", err
            stat_mask = jnp.broadcast_to(node_m[:, None], err.shape).astype(dtype)
        else:  # stress / virials: [G, 3, 3]
            diff = pred[name] - t[name]
            if name == "virials":
                diff = diff / n_atoms[:, None, None]
            err = jnp.where(mask_g[:, None, None], diff, 0.0)
            loss = jnp.sum(w_g[:, None, None] * pw(err))
            count = 9 * jnp.sum(mask_g)
            stat_name, stat_err = name, err
            stat_mask = jnp.broadcast_to(mask_g[:, None, None], err.shape).astype(dtype)
        out[f"loss_{name}"] = loss
        out[f"count_{name}"] = count.astype(dtype)
        out[f"sae_{stat_name}"] = jnp.sum(jnp.abs(stat_err) * stat_mask)
        out[f"sse_{stat_name}"] = jnp.sum(stat_err * stat_err * stat_mask)
        out[f"n_{stat_name}"] = jnp.sum(stat_mask)
    return out


def combine_loss(sums: Mapping, cfg: LossConfig):
    """``Σ_p w_p · loss_p / max(count_p, 1)`` from (device-summed) :func:`loss_sums` output."""
    total = 0.0
    for name, w in cfg.active.items():
        total = total + w * sums[f"loss_{name}"] / jnp.maximum(sums[f"count_{name}"], 1.0)
    return total
