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

import numpy as np

from ._coupling import coupling_tensor

__all__ = ["product_plan", "coupling_is_symmetric"]


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
