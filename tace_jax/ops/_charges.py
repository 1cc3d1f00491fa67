"""Charge heads (docs/theory.md §2.10): per-atom charges that sum to the total charge of each
graph.

* ``"lagrangian"`` (QEq-like): two scalar heads give ``χ_i`` and ``η_i``; with
  ``η'_i = 1/√(η_i² + 10⁻¹²)``,
  ``λ = (Q + Σ_i χ_i η'_i)/Σ_i η'_i`` and ``q_i = η'_i (λ − χ_i)``, so ``Σ_i q_i = Q``.
* ``"uniform_distribution"``: one scalar head gives ``c_i`` and the excess is spread evenly,
  ``q_i = c_i + (Q − Σ_j c_j)/N``.

  Note: TACE v0.1.0 adds ``(Σ_j c_j − Q)/N`` instead (reversed sign, so its charges do not sum
  to ``Q``); this port implements the sign above, which conserves the charge.

Sums run over the real atoms of each graph; padding atoms get ``q = 0``. These are pure
functions (the heads that produce their inputs are
:class:`~tace_jax.nn.ScalarReadout` modules).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["CHARGE_HEADS", "lagrangian_charges", "uniform_charges"]

CHARGE_HEADS = ("lagrangian", "uniform_distribution")


def _per_graph_sum(x, node_graph, num_graphs):
    return jax.ops.segment_sum(x, node_graph, num_segments=num_graphs)


def lagrangian_charges(chi, eta, total_charge, node_graph, node_mask, num_graphs: int):
    """Charges ``q [N]`` from electronegativities ``chi [N]`` and hardnesses ``eta [N]``.

    Args:
        chi, eta: per-atom head outputs ``[N]``.
        total_charge: ``[G]`` total charge ``Q`` of each graph.
        node_graph: ``[N]`` graph index of each atom.
        node_mask: ``[N]`` bool, real atoms.
        num_graphs: ``G``.
    """
    w = node_mask.astype(chi.dtype)
    inv_eta = w / jnp.sqrt(eta * eta + 1e-12)
    s_inv = _per_graph_sum(inv_eta, node_graph, num_graphs)
    s_chi = _per_graph_sum(chi * inv_eta, node_graph, num_graphs)
    q_tot = jnp.asarray(total_charge, chi.dtype).reshape(-1)
    lam = (q_tot + s_chi) / jnp.where(s_inv > 0, s_inv, 1.0)
    return inv_eta * (lam[node_graph] - chi)


def uniform_charges(c, total_charge, node_graph, node_mask, num_graphs: int):
    """Charges ``q_i = c_i + (Q − Σ_j c_j)/N`` per graph (see the module docstring)."""
    w = node_mask.astype(c.dtype)
    c = c * w
    n = _per_graph_sum(w, node_graph, num_graphs)
    excess = jnp.asarray(total_charge, c.dtype).reshape(-1) - _per_graph_sum(
        c, node_graph, num_graphs
    )
    return (c + (excess / jnp.where(n > 0, n, 1.0))[node_graph]) * w
