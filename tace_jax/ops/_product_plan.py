"""Which product-basis tensors are equal, so that each is computed once (docs/theory.md §2.6).

The product basis multiplies tensors of the *same* channel, so a coupling whose tensor ``K`` is
symmetric under exchange of its operands, ``K^{(l1 l2 l3)}_{αβγ} = K^{(l2 l1 l3)}_{βαγ}`` (true
of every even coupling, checked numerically here), gives ``[A_{l1} ⊗ A_{l2}]_{l3} =
[A_{l2} ⊗ A_{l1}]_{l3}`` at ``ν = 2``; every tensor built from two equal tensors at a later
``ν`` is equal as well. The reference basis keeps all of them (its element-linear weights have
one block per copy). :func:`product_plan` labels each tensor by the expression it evaluates
(operands sorted where the coupling is symmetric), computes each label once, and maps every
block of the reference order to its computed tensor, so the element linear still sees the
reference blocks (same weights, same result to rounding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

import jax.numpy as jnp
import numpy as np

from ._coupling import coupling_tensor

__all__ = ["product_plan", "coupling_is_symmetric", "merge_index", "merge_blocks"]


@cache
def coupling_is_symmetric(l1: int, l2: int, l3: int) -> bool:
    """``K^{(l1 l2 l3)}_{αβγ} = K^{(l2 l1 l3)}_{βαγ}`` (to 1e-12)."""
    a = np.asarray(coupling_tensor(l1, l2, l3))
    b = np.asarray(coupling_tensor(l2, l1, l3)).transpose(1, 0, 2)
    return a.shape == b.shape and bool(np.max(np.abs(a - b), initial=0.0) < 1e-12)


def _label(prev_label, l2: int, l3: int, symmetric: bool):
    ops = (prev_label, ("A", l2))
    return ("C", l3, tuple(sorted(ops)) if symmetric else ops)


def product_plan(
    paths: Mapping[int, Sequence[tuple[int, int, int]]], lmax_edge: int, correlation: int
) -> tuple[dict[int, list], dict[int, dict[int, np.ndarray]]]:
    """The paths to compute and the block maps of a deduplicated product basis.

    Args:
        paths: the reference paths ``𝒬_ν`` (``ν = 2..ν_max``, from ``product_paths``).
        lmax_edge: ``L_e`` (``𝔅⁽¹⁾`` holds ``A_0..A_{L_e}``).
        correlation: ``ν_max``.

    Returns:
        ``(computed, maps)``: ``computed[ν]`` the paths to evaluate with
        :func:`~tace_jax.ops.product_step` on the computed ``𝔅⁽ᵛ⁻¹⁾`` (a sub-list of
        ``paths[ν]``, same order); ``maps[ν][l]`` an int array, for every block of the
        reference ``𝔅⁽ᵛ⁾_l`` (reference order: path-major, then tensor), the index of its
        tensor along the block axis of the computed ``𝔅⁽ᵛ⁾_l``.

    Examples:
        >>> computed, maps = product_plan({2: [(0, 1, 1), (1, 0, 1)]}, 1, 2)
        >>> computed[2], maps[2][1].tolist()
        ([(0, 1, 1)], [0, 0])
    """
    labels = {l: [("A", l)] for l in range(lmax_edge + 1)}  # computed tensors of 𝔅⁽ᵛ⁻¹⁾
    ref_maps = {l: np.zeros(1, np.int64) for l in range(lmax_edge + 1)}
    computed: dict[int, list] = {}
    maps: dict[int, dict[int, np.ndarray]] = {1: dict(ref_maps)}
    for nu in range(2, correlation + 1):
        out_labels: dict[int, list] = {}
        index: dict[int, dict] = {}
        keep = []
        for l1, l2, l3 in paths.get(nu, []):
            if l1 not in labels:
                continue
            sym = coupling_is_symmetric(l1, l2, l3)
            new = [_label(lab, l2, l3, sym) for lab in labels[l1]]
            if all(lab in index.get(l3, {}) for lab in new):
                continue  # every tensor of this path is computed already
            keep.append((l1, l2, l3))
            for lab in new:
                out_labels.setdefault(l3, []).append(lab)
                index.setdefault(l3, {}).setdefault(lab, len(out_labels[l3]) - 1)
        new_maps: dict[int, list] = {}
        for l1, l2, l3 in paths.get(nu, []):  # reference blocks -> computed tensors
            if l1 not in labels:
                continue
            sym = coupling_is_symmetric(l1, l2, l3)
            for k in ref_maps[l1]:
                lab = _label(labels[l1][k], l2, l3, sym)
                new_maps.setdefault(l3, []).append(index[l3][lab])
        computed[nu] = keep
        labels = out_labels
        ref_maps = {l: np.asarray(m, np.int64) for l, m in new_maps.items()}
        maps[nu] = dict(ref_maps)
    return computed, maps


def merge_index(block_map: np.ndarray, n_computed: int) -> np.ndarray | None:
    """``idx [r, n_computed]``: the ``r``-th reference block of every computed tensor (``-1``
    where it has fewer copies), or ``None`` when the map is the identity.

    Examples:
        >>> merge_index(np.array([0, 1, 0]), 2).tolist()
        [[0, 1], [2, -1]]
    """
    block_map = np.asarray(block_map)
    if n_computed == len(block_map) and np.array_equal(block_map, np.arange(n_computed)):
        return None
    copies = [np.flatnonzero(block_map == u).tolist() for u in range(n_computed)]
    r = max(1, max(len(c) for c in copies))
    return np.asarray([[c[k] if k < len(c) else -1 for c in copies] for k in range(r)], np.int64)


def merge_blocks(w, idx: np.ndarray | None, block: int):
    """Sum the weight columns of equal blocks: ``w [..., D, n_ref·block] → [..., D, n·block]``
    with ``idx`` from :func:`merge_index` (a missing copy, ``-1``, adds nothing).

    ``Σ_b w_b x_{map(b)} = Σ_u (Σ_{b: map(b)=u} w_b) x_u``: the element linear of the computed
    tensors with merged weights equals that of the reference blocks.
    """
    if idx is None:
        return w
    lead, d = w.shape[:-1], w.shape[-1] // block
    w4 = w.reshape(*lead, d, block)
    out = None
    for row in idx:
        pos = jnp.asarray(np.where(row < 0, d, row))  # past the end -> zero (fill)
        part = jnp.take(w4, pos, axis=-2, mode="fill", fill_value=0)
        out = part if out is None else out + part
    return out.reshape(*lead, idx.shape[1] * block)
