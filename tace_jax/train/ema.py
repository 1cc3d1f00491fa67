"""Exponential moving average of the parameters with torch_ema's warm-up (``docs/theory.md`` §5.2).

After the ``n``-th optimiser step (``n = 1, 2, …``)::

    decay_n = min(d, (1 + n) / (10 + n))
    θ̄ ← θ̄ − (1 − decay_n)(θ̄ − θ)

The EMA parameters are used for validation, testing and export.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ema_decay", "ema_update"]


def ema_decay(num_updates, decay: float):
    """Warm-up decay ``min(d, (1+n)/(10+n))`` for the ``n``-th update (``n ≥ 1``)."""
    n = jnp.asarray(num_updates, jnp.float32)
    return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def ema_update(ema_params, params, num_updates, decay: float | None):
    """One EMA step; returns ``params`` unchanged when ``decay`` is None (EMA off).

    Args:
        ema_params: current averages.
        params: parameters after the ``num_updates``-th optimiser step.
        num_updates: ``n`` (1 for the first update).
        decay: the target decay ``d``.
    """
    if decay is None:
        return params
    d = ema_decay(num_updates, decay)

    def upd(e, p):
        dd = d.astype(e.dtype)
        return e - (1.0 - dd) * (e - p)

    return jax.tree.map(upd, ema_params, params)
