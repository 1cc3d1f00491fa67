"""Product basis (self-contraction, the "ACE" step) of TACE (docs/theory.md §2.6).

Per atom and channel (channel-diagonal):

* ``𝔅⁽¹⁾_l = [A_l]``;
* for ``ν = 2..ν_max``, for each path ``(l1, l2, l3)`` of ``𝒬_ν`` and each tensor ``T`` of
  ``𝔅⁽ᵛ⁻¹⁾_{l1}`` (in order), append ``[T ⊗ A_{l2}]_{l3}`` to ``𝔅⁽ᵛ⁾_{l3}``.

``𝒬_ν`` enumerates ``l1`` (ascending, ranks present in ``𝔅⁽ᵛ⁻¹⁾``), ``l2 = 0..L_e`` and
``l3 ≤ L_e``, with optional ``l1``-``l2`` and ``l3``-``l1`` restrictions, then is pruned backwards
(last step: ``l3`` in the output ranks; earlier: ``l3`` among the ``l1`` or ``l2`` of the kept later
paths). The output is ``h_l = Linear_out_l(Σ_ν ElementLinear_{ν,l}(concat 𝔅⁽ᵛ⁾_l))``.

All the couplings that share a path are batched over the tensors of ``𝔅⁽ᵛ⁻¹⁾_{l1}``
(:func:`tace_jax.ops.product_step`), and the ``ν`` element-linears of one rank are one
blockwise sum (:func:`tace_jax.ops.element_linear_sum`: no weight is copied or rescaled per call).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from tace_jax.ops import (
    L1L2_OPTIONS,
    element_linear_sum,
    merge_blocks,
    merge_index,
    product_plan,
    product_step,
    rank_relation,
    sorted_element_linear_sum,
    take_rows,
)

from .linear import Linear, uniform_sqrt3

__all__ = ["product_paths", "Product", "DERIVED", "derive_weights"]


def product_paths(
    lmax_edge: int,
    correlation: int,
    output_ranks: Sequence[int],
    l1l2: str | None = None,
    l3l1: str | None = None,
) -> tuple[dict[int, list[tuple[int, int, int]]], dict[int, dict[int, int]]]:
    """Pruned path lists ``𝒬_ν`` (``ν = 2..ν_max``) and block counts ``n_{ν,l}``.

    Returns:
        ``(paths, counts)`` with ``paths[ν]`` the ordered kept paths and ``counts[ν][l]`` the
        number of rank-``l`` tensors in ``𝔅⁽ᵛ⁾`` (``ν = 1..ν_max``; zero counts omitted).
    """
    for name, opt in (("l1l2", l1l2), ("l3l1", l3l1)):
        if opt not in L1L2_OPTIONS:
            options = list(L1L2_OPTIONS)
            raise ValueError(f"product_paths: {name} must be one of {options}, got {opt!r}")
    keep12, keep31 = rank_relation(l1l2, "l1l2"), rank_relation(l3l1, "l3l1")
    ranks = range(lmax_edge + 1)

    def forward(path_lists):
        counts = {1: {l: 1 for l in ranks}}
        for nu in range(2, correlation + 1):
            c: dict[int, int] = {}
            for l1, _, l3 in path_lists.get(nu, []):
                if counts[nu - 1].get(l1, 0):
                    c[l3] = c.get(l3, 0) + counts[nu - 1][l1]
            counts[nu] = c
        return counts

    full: dict[int, list] = {}
    for nu in range(2, correlation + 1):
        prev = forward(full)[nu - 1]
        full[nu] = [
            (l1, l2, l3)
            for l1 in sorted(l for l, n in prev.items() if n)
            for l2 in ranks
            if keep12(l1, l2)
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax_edge) + 1, 2)
            if keep31(l3, l1)
        ]
    kept: dict[int, list] = {}
    needed = set(output_ranks)
    for nu in range(correlation, 1, -1):
        kept[nu] = [p for p in full[nu] if p[2] in needed]
        needed = {p[0] for p in kept[nu]} | {p[1] for p in kept[nu]}
    return kept, forward(kept)


#: Flax collection of inference weights derived from the parameters (the merged product-basis
#: weights), computed once by :func:`derive_weights` instead of in every call.
DERIVED = "derived"


def derive_weights(model: nn.Module, variables, *args, **kwargs) -> dict:
    """The :data:`DERIVED` collection of ``model`` for ``variables``: one forward pass on
    ``args`` (any valid input, e.g. a one-atom graph) with that collection mutable.

    ``{**variables, DERIVED: derive_weights(...)}`` then gives the same outputs as ``variables``
    without the per-call weight merges. The derived weights do not depend on the parameters
    inside the function that uses them: never pass them where gradients w.r.t. the parameters
    are taken, and recompute them whenever the parameters change.
    """
    _, state = model.apply(variables, *args, mutable=[DERIVED], **kwargs)
    return state.get(DERIVED, {})


class Product(nn.Module):
    """Product basis plus its contraction to the output node features.

    Attributes:
        lmax_edge: ``L_e``.
        correlation: ``ν_max``.
        output_ranks: ranks of the output node features.
        num_channel: ``C`` (output channels).
        num_channel_hidden: ``C_h`` (A-basis channels).
        num_elements: ``Z_n``.
        bias: per-element rank-0 biases (one per ``ν``).
        out_bias: rank-0 bias of ``Linear_out`` (the reference: last layer only).
        l1l2, l3l1: optional path restrictions.
        param_dtype: storage dtype.
        dedup: compute each distinct product-basis tensor once
            (:func:`tace_jax.ops.product_plan`; same result, less work).

    Parameters: ``linears_{ν}_{l}`` (``weights [Z_n, C_h, n_{ν,l}·C_h]``, ``bias [Z_n, C_h]``)
    and ``linear_out_{l}`` (``weight [C_h, C]``, ``bias``).
    """

    lmax_edge: int
    correlation: int
    output_ranks: tuple[int, ...]
    num_channel: int
    num_channel_hidden: int
    num_elements: int
    bias: bool = True
    out_bias: bool = False
    l1l2: str | None = None
    l3l1: str | None = None
    param_dtype: Any = jnp.float32
    dedup: bool = True

    def _use_derived(self, name: str) -> bool:
        """Read (or, when its collection is mutable outside ``init``, create) the derived
        merged weight ``name`` instead of merging the parameter in this call."""
        if self.has_variable(DERIVED, name):
            return True
        return self.is_mutable_collection(DERIVED) and not self.is_initializing()

    @nn.compact
    def __call__(
        self,
        a_basis: dict[int, jnp.ndarray],
        onehot: jnp.ndarray,
        layout: tuple[jnp.ndarray, jnp.ndarray, tuple[int, ...]] | None = None,
    ) -> dict[int, jnp.ndarray]:
        """``a_basis``: ``l → [N, 2l+1, C_h]`` for ``l = 0..L_e``; returns ``l → [N, 2l+1, C]``.

        ``layout``: optional ``(perm, inv, budgets)`` of :func:`tace_jax.ops.element_layout`;
        the product basis is then built on the element-sorted rows and each element's block
        multiplied by its own weights only (same result, cost independent of ``Z_n``).
        """
        ch, pd = self.num_channel_hidden, self.param_dtype
        paths, counts = product_paths(
            self.lmax_edge, self.correlation, self.output_ranks, self.l1l2, self.l3l1
        )
        if layout is not None:
            perm, inv, budgets = layout
            if len(budgets) != self.num_elements:
                raise ValueError(
                    f"Product: {len(budgets)} element budgets for {self.num_elements} elements"
                )
            a_basis = {l: take_rows(a, perm) for l, a in a_basis.items()}
        computed, maps = paths, None
        if self.dedup:  # equal tensors once (tace_jax.ops.product_plan)
            computed, maps = product_plan(paths, self.lmax_edge, self.correlation)
        basis = {1: {l: a[:, :, None] for l, a in a_basis.items()}}  # l -> [N, 2l+1, n, C_h]
        a_cat = jnp.concatenate([a_basis[l] for l in range(self.lmax_edge + 1)], axis=1)
        for nu in range(2, self.correlation + 1):
            basis[nu] = product_step(basis[nu - 1], a_cat, computed[nu], self.lmax_edge)
        out = {}
        for l in self.output_ranks:
            xs, ws, scales, merges, bias = [], [], [], [], 0.0
            for nu in range(1, self.correlation + 1):
                n_blocks = counts[nu].get(l, 0)
                if n_blocks == 0:
                    continue
                x = basis[nu][l]  # [N, g, n, C_h]: the computed tensors
                fan_in = n_blocks * ch  # of the reference blocks (weights and scale)
                name = f"linears_{nu}_{l}"
                w = self.param(name, uniform_sqrt3, (self.num_elements, ch, fan_in), pd)
                idx = None if maps is None else merge_index(maps[nu][l], x.shape[2])
                merge = None if idx is None else functools.partial(merge_blocks, idx=idx, block=ch)
                if merge is not None and self._use_derived(name):
                    w, merge = self.variable(DERIVED, name, merge, w).value, None
                ws.append(w.astype(x.dtype))
                merges.append(merge)
                scales.append(1.0 / math.sqrt(fan_in))
                # input channel index = block·C_h + c
                xs.append(x.reshape(x.shape[0], 2 * l + 1, x.shape[2] * ch))
                if self.bias and l == 0:
                    b = self.param(
                        f"linears_{nu}_{l}_bias", nn.initializers.zeros, (self.num_elements, ch), pd
                    )
                    bias = bias + onehot @ b.astype(x.dtype)
            if not xs:
                raise ValueError(f"Product: no product-basis tensor of output rank {l}")
            if layout is None:
                ws = [w if m is None else m(w) for w, m in zip(ws, merges)]
                y = element_linear_sum(xs, ws, scales, onehot)
            else:  # sorted rows -> node order (padding nodes: zero rows, as on the select path)
                y = sorted_element_linear_sum(xs, ws, scales, budgets, merges)
                y = take_rows(y, inv)
            if self.bias and l == 0:
                y = y + bias[:, None, :]
            lin = Linear(
                self.num_channel,
                use_bias=self.out_bias and l == 0,
                param_dtype=pd,
                name=f"linear_out_{l}",
            )
            out[l] = lin(y)
        return out
