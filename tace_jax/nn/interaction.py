"""Interaction block: equivariant convolution producing the A-basis (TACE_SPEC §2.4).

For every path ``p = (l1, l2, l3)`` (lexicographic; :func:`interaction_paths`) the message
from sender ``j`` to receiver ``i`` is ``R_{ji,(p,c)} · [h̃_{j,c,l1} ⊗ Y_{l2}(r̂_ji)]_{l3}`` with
the irreducible coupling ``[X⊗Y]_{l3} = Π_{l3}(X ⋆_k Y)/√3^k`` (TACE_SPEC §1.5). In the
compressed layout the projection is implicit: each coupling is a contraction with the constant
``K^{(l1 l2 l3)}`` (``tace_jax.ops.coupling_tensor``), which is exactly ``Q_{l3}ᵀ Π_{l3}(…)``.

Messages are summed at the receivers (one ``segment_sum`` for all paths), concatenated per
``l3`` in path order (block ``q`` of path ``p`` = its rank among paths with the same ``l3``),
mixed by ``Linear_down_{l3}`` and divided by ``n̄``. The self-connection (layers ``t ≥ 1``) is
an element-dependent linear map of the A-basis itself.

Hot path: the harmonics are contracted with ``K`` per edge once (``KY[e, α, γ]``, no channel
axis) and all paths sharing ``l1`` are evaluated with one batched contraction against the
gathered sender features ``h̃[senders] [E, C, 2l1+1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.ops import coupling_paths, coupling_tensor

from .linear import MLP, ElementLinear, Linear

__all__ = ["interaction_paths", "Interaction", "edge_messages"]


def interaction_paths(
    input_ranks: Sequence[int], lmax_edge: int, l1l2: str | None = None
) -> list[tuple[int, int, int]]:
    """Paths ``(l1, l2, l3)``: ``l1`` over the input ranks, ``l2, l3 ≤ L_e``, lexicographic."""
    return coupling_paths(list(input_ranks), range(lmax_edge + 1), lmax_edge, l1l2)


def edge_messages(
    h_send: dict[int, jnp.ndarray],
    ys: Sequence[jnp.ndarray],
    radial: jnp.ndarray,
    paths: Sequence[tuple[int, int, int]],
) -> dict[int, jnp.ndarray]:
    """Per-edge messages grouped by output rank.

    Args:
        h_send: ``l1 → [E, C, 2l1+1]`` sender features (after Linear_up).
        ys: harmonics ``Y_l [E, 2l+1]``, ``l = 0..L_e``.
        radial: ``[E, P, C]`` per-path radial weights.
        paths: the ``P`` paths, in the order of ``radial``'s path axis.

    Returns:
        ``l3 → [E, n_{l3}, C, 2l3+1]``, paths with the same ``l3`` stacked in path order.
    """
    dtype = radial.dtype
    out: dict[int, list] = {}
    by_l1: dict[int, list[int]] = {}
    for p, (l1, _, _) in enumerate(paths):
        by_l1.setdefault(l1, []).append(p)
    msgs: dict[int, jnp.ndarray] = {}
    for l1, ps in by_l1.items():
        x = h_send[l1]  # [E, C, 2l1+1]
        if l1 == 0:
            for p in ps:
                _, l2, l3 = paths[p]
                k0 = coupling_tensor(0, l2, l3)[0]  # [2l2+1, 2l3+1], the identity
                ky = ys[l2] if np.array_equal(k0, np.eye(2 * l2 + 1)) else ys[l2] @ k0.astype(dtype)
                msgs[p] = (radial[:, p, :] * x[:, :, 0])[:, :, None] * ky[:, None, :]
            continue
        # KY[e, α, (p, γ)]: harmonics contracted with the coupling tensors of every path
        kys, sizes = [], []
        for p in ps:
            _, l2, l3 = paths[p]
            kt = jnp.asarray(coupling_tensor(l1, l2, l3), dtype)  # [a, b, g]
            kys.append(jnp.einsum("eb,abg->eag", ys[l2], kt))
            sizes.append(2 * l3 + 1)
        ky = jnp.concatenate(kys, axis=-1)  # [E, a, G]
        t = jnp.einsum("eca,eag->ecg", x, ky)  # [E, C, G]
        offs = np.cumsum([0, *sizes])
        for i, p in enumerate(ps):
            msgs[p] = radial[:, p, :, None] * t[:, :, offs[i] : offs[i + 1]]
    for p, (_, _, l3) in enumerate(paths):
        out.setdefault(l3, []).append(msgs[p])
    return {l3: jnp.stack(v, axis=1) for l3, v in sorted(out.items())}


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
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        h: dict[int, jnp.ndarray],
        edge_feats: jnp.ndarray,
        ys: Sequence[jnp.ndarray],
        senders: jnp.ndarray,
        receivers: jnp.ndarray,
        edge_weight: jnp.ndarray,
        onehot: jnp.ndarray,
    ) -> tuple[dict[int, jnp.ndarray], dict[int, jnp.ndarray]]:
        """Return ``(A, s)``: A-basis ``l → [N, C_h, 2l+1]`` and self-connection ``l → [N, C, 2l+1]``.

        ``edge_weight [E]`` (edge mask in the compute dtype) zeroes padding-edge messages.
        """
        c, pd = self.num_channel, self.param_dtype
        n_nodes, n_edges = onehot.shape[0], senders.shape[0]
        paths = interaction_paths(self.input_ranks, self.lmax_edge, self.l1l2)
        n_paths = len(paths)
        hu = {
            l: Linear(c, use_bias=self.bias and l == 0, param_dtype=pd, name=f"linear_up_{l}")(h[l])
            for l in self.input_ranks
        }
        radial = MLP((*self.radial_hidden, c * n_paths), "forward", pd, name="radial_net")(
            edge_feats
        )
        radial = (radial * edge_weight[:, None]).reshape(n_edges, n_paths, c)
        h_send = {l: x[senders] for l, x in hu.items()}
        msgs = edge_messages(h_send, ys, radial, paths)  # l3 -> [E, n, C, g]
        l3s = sorted(msgs)
        flat = jnp.concatenate([msgs[l].reshape(n_edges, -1) for l in l3s], axis=-1)
        agg = jax.ops.segment_sum(flat, receivers, num_segments=n_nodes)  # [N, F]
        a_basis, off = {}, 0
        inv_n = 1.0 / self.avg_num_neighbors
        for l3 in l3s:
            n_q = msgs[l3].shape[1]
            size = n_q * c * (2 * l3 + 1)
            x = agg[:, off : off + size].reshape(n_nodes, n_q * c, 2 * l3 + 1)
            off += size
            down = Linear(self.num_channel_hidden, param_dtype=pd, name=f"linear_down_{l3}")
            a_basis[l3] = down(x) * inv_n
        for l in range(self.lmax_edge + 1):  # ranks no path reaches (restricted path lists)
            if l not in a_basis:
                a_basis[l] = jnp.zeros((n_nodes, self.num_channel_hidden, 2 * l + 1), flat.dtype)
        sc = {
            l: ElementLinear(
                c, self.num_elements, use_bias=self.bias and l == 0, param_dtype=pd, name=f"sc_{l}"
            )(a_basis[l], onehot)
            for l in self.sc_ranks
        }
        return a_basis, sc
