"""Interaction block: equivariant convolution producing the A-basis (docs/theory.md §2.4).

For every path ``p = (l1, l2, l3)`` (lexicographic; :func:`interaction_paths`) the message
from sender ``j`` to receiver ``i`` is ``R_{ji,(p,c)} · [h̃_{j,c,l1} ⊗ Y_{l2}(r̂_ji)]_{l3}`` with
the irreducible coupling ``[X⊗Y]_{l3} = Π_{l3}(X ⋆_k Y)/√3^k`` (docs/theory.md §1.5). In the
compressed layout the projection is implicit: each coupling is a contraction with the constant
``K^{(l1 l2 l3)}`` (``tace_jax.ops.coupling_tensor``), which equals ``Q_{l3}ᵀ Π_{l3}(…)/√3^k``.

Messages are summed at the receivers, concatenated per ``l3`` in path order (block ``q`` =
rank of the path among those with the same ``l3``), mixed by ``Linear_down_{l3}`` and divided by
``n̄``. The self-connection (layers ``t ≥ 1``) is an element-dependent linear map of the A-basis.

Hot path (features are channels last, ``[..., 2l+1, C]``; the maths lives in
:func:`tace_jax.ops.edge_message_blocks` and :func:`tace_jax.ops.scan_edges`):

* per edge, the harmonics of every path sharing ``l1`` are contracted with ``K`` in one small
  GEMM (``KY[e, α, γ]``, no channel axis);
* the channel-level work ``Σ_α KY[e, α, γ]·h̃[s_e, α, c]·R[e, p, c]`` is an unrolled sum that XLA
  fuses into one loop vectorised over channels;
* the paths are grouped by ``(l1, l3)`` (:func:`tace_jax.ops.message_blocks`; the radial MLP's
  last weight has its columns permuted into that order once per call), so each group's radial
  weight ``[S, n, 1, C]`` multiplies ``[S, n, 2l3+1, C]`` by a plain broadcast fused into the
  coupling loop, and each group keeps its own array and scatter (no concatenation: that makes
  XLA copy through a slow layout change);
* edges are processed in chunks (``lax.scan`` with rematerialisation) that scatter-add into the
  node accumulator, so no ``[E, P, C, 2l+1]`` tensor is ever materialised (on CPU, touching fresh
  large buffers costs more than the arithmetic).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tace_jax.ops import (
    block_order,
    coupling_paths,
    default_edge_chunk,
    edge_message_blocks,
    message_blocks,
    mlp_apply,
    scan_edges,
)

from .linear import DenseWeights, ElementLinear, Linear

__all__ = ["interaction_paths", "Interaction"]


def interaction_paths(
    input_ranks: Sequence[int], lmax_edge: int, l1l2: str | None = None
) -> list[tuple[int, int, int]]:
    """Paths ``(l1, l2, l3)``: ``l1`` over the input ranks, ``l2, l3 ≤ L_e``, lexicographic."""
    return coupling_paths(list(input_ranks), range(lmax_edge + 1), lmax_edge, l1l2)


class Interaction(nn.Module):
    """One interaction block (A-basis and self-connection).

    Attributes:
        input_ranks: ranks of the incoming node features (``(0,)`` for the first layer).
        lmax_edge: ``L_e``; the A-basis has ranks ``0..L_e``.
        num_channel: ``C`` (input and Linear_up channels).
        num_channel_hidden: ``C_h`` (A-basis channels).
        radial_hidden: hidden widths of the radial MLP.
        avg_num_neighbors: ``n̄``.
        num_elements: ``Z_n``.
        sc_ranks: ranks with a self-connection (empty for the first layer).
        bias: rank-0 biases in Linear_up and the self-connection.
        l1l2: optional path restriction.
        edge_chunk: edges per chunk; ``None`` processes all edges at once; ``"auto"`` picks
            about 4 MiB of messages per chunk on CPU (none when that gives two chunks or
            fewer) and no chunking on accelerators.
        param_dtype: storage dtype.

    Parameters: ``linear_up_{l}``, ``radial_net`` (``weight_k``), ``linear_down_{l3}``,
    ``sc_{l}`` (``weights``, ``bias``).
    """

    input_ranks: tuple[int, ...]
    lmax_edge: int
    num_channel: int
    num_channel_hidden: int
    radial_hidden: tuple[int, ...]
    avg_num_neighbors: float
    num_elements: int
    sc_ranks: tuple[int, ...] = ()
    bias: bool = True
    l1l2: str | None = None
    edge_chunk: int | str | None = "auto"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        h: dict[int, jnp.ndarray],
        edge_feats: jnp.ndarray,
        y_cat: jnp.ndarray,
        senders: jnp.ndarray,
        receivers: jnp.ndarray,
        edge_weight: jnp.ndarray,
        onehot: jnp.ndarray,
    ) -> tuple[dict[int, jnp.ndarray], dict[int, jnp.ndarray]]:
        """Return ``(A, s)``: A-basis ``l → [N, 2l+1, C_h]``, self-connection ``l → [N, 2l+1, C]``.

        Args:
            h: node features ``l → [N, 2l+1, C]`` for the input ranks.
            edge_feats: radial features ``[E, n_basis]``.
            y_cat: concatenated harmonics ``[E, Σ_{l≤L_e} (2l+1)]``.
            senders, receivers: ``[E]``.
            edge_weight: ``[E]`` edge mask in the compute dtype (zeroes padding messages).
            onehot: ``[N, Z_n]`` element one-hot.
        """
        c, pd = self.num_channel, self.param_dtype
        dtype = edge_feats.dtype
        n_nodes = onehot.shape[0]
        paths = interaction_paths(self.input_ranks, self.lmax_edge, self.l1l2)
        n_paths = len(paths)
        hu = {
            l: Linear(c, use_bias=self.bias and l == 0, param_dtype=pd, name=f"linear_up_{l}")(h[l])
            for l in self.input_ranks
        }
        widths = (edge_feats.shape[-1], *self.radial_hidden, c * n_paths)
        radial_ws = DenseWeights(widths, "forward", pd, name="radial_net")(dtype)

        blocks = message_blocks(paths)  # (l1, l3) groups
        w_last = radial_ws[-1].reshape(-1, n_paths, c)[:, block_order(paths)]
        w_last = w_last.reshape(-1, n_paths * c)
        radial_ws = [*radial_ws[:-1], w_last]  # radial output in block order

        def chunk_messages(feats, ycat, snd, wgt):
            radial = (mlp_apply(radial_ws, feats) * wgt[:, None]).reshape(-1, n_paths, c)
            x_send = {l: x[snd] for l, x in hu.items()}
            return edge_message_blocks(x_send, ycat, radial, paths, self.lmax_edge)

        shapes = [(len(ps), 2 * l3 + 1, c) for _, l3, ps in blocks]
        chunk = self.edge_chunk
        if chunk == "auto":
            on_cpu = jax.default_backend() == "cpu"
            width = sum(n * g for n, g, _ in shapes) * c
            chunk = default_edge_chunk(width, jnp.dtype(dtype).itemsize) if on_cpu else None
            if chunk is not None and senders.shape[0] <= 2 * chunk:
                chunk = None  # two chunks or fewer: one pass, no remat (aspirin: about 4 %
                # faster in one same-run A/B, within noise in another)
        aggs = scan_edges(
            chunk_messages,
            (edge_feats, y_cat, senders, edge_weight),
            receivers,
            n_nodes,
            shapes,
            chunk,
        )  # one scatter per (l1, l3) group: [N, n, 2l3+1, C]
        a_basis = {}
        inv_n = 1.0 / self.avg_num_neighbors
        for l3 in sorted({p[2] for p in paths}):
            # the groups of one l3 hold its paths in path order (rank q)
            x = jnp.concatenate([a for (_, b3, _), a in zip(blocks, aggs) if b3 == l3], axis=1)
            x = jnp.swapaxes(x, 1, 2).reshape(n_nodes, 2 * l3 + 1, -1)  # channel q·C + c
            down = Linear(self.num_channel_hidden, param_dtype=pd, name=f"linear_down_{l3}")
            a_basis[l3] = down(x) * inv_n
        for l in range(self.lmax_edge + 1):  # ranks no path reaches (restricted path lists)
            if l not in a_basis:
                a_basis[l] = jnp.zeros((n_nodes, 2 * l + 1, self.num_channel_hidden), dtype)
        sc = {
            l: ElementLinear(
                c, self.num_elements, use_bias=self.bias and l == 0, param_dtype=pd, name=f"sc_{l}"
            )(a_basis[l], onehot)
            for l in self.sc_ranks
        }
        return a_basis, sc
