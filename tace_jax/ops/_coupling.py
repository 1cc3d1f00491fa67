"""Irreducible coupling of two ICTs: ``[X⊗Y]_{l3} = Π_{l3}(X ⋆_k Y)/√3^k`` (docs/theory.md §1.5)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from ._layout import check_layout
from ._stf import stf_basis, stf_projector

__all__ = [
    "couple",
    "coupling_tensor",
    "coupling_paths",
    "contraction_order",
    "is_allowed",
    "L1L2_OPTIONS",
    "rank_relation",
]


def is_allowed(l1: int, l2: int, l3: int) -> bool:
    """Triangle rule with ``l1 + l2 + l3`` even (natural parity, no Levi-Civita)."""
    return min(l1, l2, l3) >= 0 and abs(l1 - l2) <= l3 <= l1 + l2 and (l1 + l2 + l3) % 2 == 0


def contraction_order(l1: int, l2: int, l3: int) -> int:
    """Number ``k = (l1 + l2 − l3)/2`` of contracted index pairs."""
    if not is_allowed(l1, l2, l3):
        raise ValueError(f"coupling ({l1}, {l2}) -> {l3} is not allowed (triangle rule, even sum)")
    return (l1 + l2 - l3) // 2


L1L2_OPTIONS: tuple[str | None, ...] = (None, "<=", "<", "==", ">=", ">", "!=")
"""Allowed values of the optional rank restrictions (``l1l2``, ``l3l1``) of path lists."""

_RELATIONS: dict[str | None, Callable[[int, int], bool]] = {
    None: lambda a, b: True,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "!=": lambda a, b: a != b,
}


def rank_relation(option: str | None, name: str = "l1l2") -> Callable[[int, int], bool]:
    """The predicate ``(a, b) → bool`` of a rank restriction (``None`` keeps every pair).

    Args:
        option: one of :data:`L1L2_OPTIONS`.
        name: the option's name, for the error message.

    Raises:
        ValueError: ``option`` is not in :data:`L1L2_OPTIONS`.

    Examples:
        >>> rank_relation("<=")(1, 2), rank_relation("<=")(2, 1)
        (True, False)
    """
    if option not in _RELATIONS:
        raise ValueError(f"{name} must be one of {list(L1L2_OPTIONS)}, got {option!r}")
    return _RELATIONS[option]


def coupling_paths(l1s, l2s, l3max: int, l1l2: str | None = None) -> list[tuple[int, int, int]]:
    """Allowed ``(l1, l2, l3)`` in lexicographic order.

    Args:
        l1s, l2s: iterables of ranks (or an int ``L`` meaning ``0..L``).
        l3max: largest output rank kept.
        l1l2: optional restriction between ``l1`` and ``l2``: one of
            ``None, "<=", "<", "==", ">=", ">", "!="``.
    """
    keep = rank_relation(l1l2)
    if isinstance(l1s, int):
        l1s = range(l1s + 1)
    if isinstance(l2s, int):
        l2s = range(l2s + 1)
    out = []
    for l1 in sorted(set(l1s)):
        for l2 in sorted(set(l2s)):
            if not keep(l1, l2):
                continue
            for l3 in range(abs(l1 - l2), min(l1 + l2, l3max) + 1, 2):
                out.append((l1, l2, l3))
    return out


def _contract_full(x: jnp.ndarray, y: jnp.ndarray, l1: int, l2: int, k: int) -> jnp.ndarray:
    """``X ⋆_k Y``: the last ``k`` axes of ``x`` with the first ``k`` (of ``l2``) of ``y``."""
    lead_x, lead_y = x.shape[: x.ndim - l1], y.shape[: y.ndim - l2]
    xf = x.reshape(*lead_x, 3 ** (l1 - k), 3**k)
    yf = y.reshape(*lead_y, 3**k, 3 ** (l2 - k))
    out = jnp.einsum("...ac,...cb->...ab", xf, yf)
    return out.reshape(*out.shape[:-2], 3 ** (l1 + l2 - 2 * k))


@functools.cache
def coupling_tensor(l1: int, l2: int, l3: int) -> np.ndarray:
    """``K^{(l1 l2 l3)}_{αβγ} = Q_{l3}ᵀ[(Q_{l1}e_α) ⋆_k (Q_{l2}e_β)]/√3^k``, float64.

    Shape ``(2l1+1, 2l2+1, 2l3+1)``; ``‖K‖²_F`` is basis independent (docs/theory.md §1.5 table).
    """
    k = contraction_order(l1, l2, l3)
    q1, q2, q3 = stf_basis(l1), stf_basis(l2), stf_basis(l3)
    a = q1.T.reshape(2 * l1 + 1, 3 ** (l1 - k), 3**k)
    b = q2.T.reshape(2 * l2 + 1, 3**k, 3 ** (l2 - k))
    prod = np.einsum("xac,ycb->xyab", a, b).reshape((2 * l1 + 1) * (2 * l2 + 1), -1)
    kt = (prod @ q3).reshape(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1) / math.sqrt(3.0**k)
    kt[np.abs(kt) < 1e-15] = 0.0
    kt.setflags(write=False)
    return kt


def _couple_compressed(x: jnp.ndarray, y: jnp.ndarray, l1: int, l2: int, l3: int) -> jnp.ndarray:
    """``out_c = Σ_ab x_a y_b K_abc``, with the cheapest contraction order.

    * ``(0, l, l)`` and ``(l, 0, l)``: ``K`` is the identity, so ``out = x·y``.
    * ``(l, l, 0)``: ``K_ab0 = δ_ab/√3^l``, a scaled dot product.
    * Otherwise, when one operand has fewer leading elements (it is broadcast, e.g. edge
      harmonics ``[E, 1, ·]`` against channel features ``[E, C, ·]``), ``K`` is contracted
      with that operand first (once per edge, not per channel), then a batched mat-vec with
      the other; this is several times faster than a three-operand einsum (see
      ``benchmarks/bench_cartesian.py``).
    """
    if l1 == 0 or l2 == 0:
        return x * y
    if l3 == 0:
        return jnp.sum(x * y, axis=-1, keepdims=True) * (1.0 / math.sqrt(3.0**l1))
    kt = jnp.asarray(coupling_tensor(l1, l2, l3), jnp.result_type(x, y))
    nx, ny = math.prod(x.shape[:-1]), math.prod(y.shape[:-1])
    if ny < nx:
        return jnp.einsum("...a,...ac->...c", x, jnp.einsum("...b,abc->...ac", y, kt))
    if nx < ny:
        return jnp.einsum("...b,...bc->...c", y, jnp.einsum("...a,abc->...bc", x, kt))
    return jnp.einsum("...a,...b,abc->...c", x, y, kt)


def couple(
    x: jnp.ndarray, y: jnp.ndarray, l1: int, l2: int, l3: int, layout: str = "compressed"
) -> jnp.ndarray:
    """Irreducible coupling ``[x ⊗ y]_{l3} = Π_{l3}(x ⋆_k y)/√3^k``.

    Args:
        x: rank ``l1``: ends in ``l1`` axes of 3 (full) or ``2l1+1`` (compressed).
        y: rank ``l2``, likewise. Leading (batch, channel) axes broadcast against ``x``'s.
        l1, l2, l3: ranks, with ``(l1, l2, l3)`` allowed (``is_allowed``).
        layout: ``"compressed"`` or ``"full"``.

    Returns:
        The rank-``l3`` result in the same layout.
    """
    check_layout(layout)
    k = contraction_order(l1, l2, l3)
    if layout == "compressed":
        if x.shape[-1] != 2 * l1 + 1 or y.shape[-1] != 2 * l2 + 1:
            raise ValueError(
                f"compressed couple({l1},{l2}->{l3}) needs x[..., {2 * l1 + 1}], "
                f"y[..., {2 * l2 + 1}]; got {x.shape}, {y.shape}"
            )
        return _couple_compressed(x, y, l1, l2, l3)
    if x.shape[x.ndim - l1 :] != (3,) * l1 or y.shape[y.ndim - l2 :] != (3,) * l2:
        raise ValueError(f"full couple({l1},{l2}->{l3}) got shapes {x.shape}, {y.shape}")
    out = _contract_full(x, y, l1, l2, k) / math.sqrt(3.0**k)
    if l3 >= 2 and k < min(l1, l2):
        out = out @ jnp.asarray(stf_projector(l3), out.dtype)
    return out.reshape(*out.shape[:-1], *((3,) * l3))
