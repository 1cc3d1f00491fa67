"""Interaction block: equivariant convolution producing the A-basis (TACE_SPEC §2.4).

For every path ``p = (l1, l2, l3)`` (lexicographic; :func:`interaction_paths`) the message
from sender ``j`` to receiver ``i`` is ``R_{ji,(p,c)} · [h̃_{j,c,l1} ⊗ Y_{l2}(r̂_ji)]_{l3}`` with
the irreducible coupling ``[X⊗Y]_{l3} = Π_{l3}(X ⋆_k Y)/√3^k`` (TACE_SPEC §1.5). In the
compressed layout the projection is implicit: each coupling is a contraction with the constant
``K^{(l1 l2 l3)}`` (``tace_jax.ops.coupling_tensor``), which equals ``Q_{l3}ᵀ Π_{l3}(…)/√3^k``.

Messages are summed at the receivers, concatenated per ``l3`` in path order (block ``q`` =
rank of the path among those with the same ``l3``), mixed by ``Linear_down_{l3}`` and divided by
``n̄``. The self-connection (layers ``t ≥ 1``) is an element-dependent linear map of the A-basis.

Hot path (features are channels last, ``[..., 2l+1, C]``):

* per edge, the harmonics of every path sharing ``l1`` are contracted with ``K`` in one small
  GEMM (``KY[e, α, γ]``, no channel axis);
* the channel-level work ``Σ_α KY[e, α, γ]·h̃[s_e, α, c]·R[e, p, c]`` is an unrolled sum that XLA
  fuses into one loop vectorised over channels;
* edges are processed in chunks (``lax.scan`` with rematerialisation) that scatter-add into the
  node accumulator, so no ``[E, P, C, 2l+1]`` tensor is ever materialised (on CPU, touching fresh
  large buffers costs more than the arithmetic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.ops import coupling_paths, coupling_tensor

from .linear import DenseWeights, ElementLinear, Linear, mlp_apply

__all__ = ["interaction_paths", "Interaction", "edge_messages", "scan_edges"]


def interaction_paths(
    input_ranks: Sequence[int], lmax_edge: int, l1l2: str | None = None
) -> list[tuple[int, int, int]]:
    """Paths ``(l1, l2, l3)``: ``l1`` over the input ranks, ``l2, l3 ≤ L_e``, lexicographic."""
    return coupling_paths(list(input_ranks), range(lmax_edge + 1), lmax_edge, l1l2)


def _is_identity(k: np.ndarray) -> bool:
    return k.shape[0] == k.shape[1] and np.allclose(k, np.eye(k.shape[0]), atol=1e-12, rtol=0)


def _ky_matrix(paths, ps, l1: int, lmax_edge: int) -> tuple[np.ndarray, list[int]]:
    """``[Σ_l2 (2l2+1), (2l1+1)·G]`` matrix mapping concatenated harmonics to ``KY[α, (p, γ)]``."""
    y_off = np.cumsum([0] + [2 * l + 1 for l in range(lmax_edge + 1)])
    sizes = [2 * paths[p][2] + 1 for p in ps]
    g_off = np.cumsum([0, *sizes])
    a = 2 * l1 + 1
    m = np.zeros((y_off[-1], a, g_off[-1]))
    for i, p in enumerate(ps):
        _, l2, l3 = paths[p]
        kt = coupling_tensor(l1, l2, l3)  # [a, b, g]
        m[y_off[l2] : y_off[l2 + 1], :, g_off[i] : g_off[i + 1]] = kt.transpose(1, 0, 2)
    return m.reshape(y_off[-1], a * g_off[-1]), list(g_off)


def edge_messages(
    x_send: dict[int, jnp.ndarray],
    y_cat: jnp.ndarray,
    radial: jnp.ndarray,
    paths: Sequence[tuple[int, int, int]],
    lmax_edge: int,
) -> jnp.ndarray:
    """Per-edge messages of every path, flattened.

    Args:
        x_send: ``l1 → [S, 2l1+1, C]`` sender features (after Linear_up).
        y_cat: ``[S, Σ_l (2l+1)]`` concatenated harmonics ``Y_0..Y_{L_e}``.
        radial: ``[S, P, C]`` per-path radial weights.
        paths: the ``P`` paths (order of ``radial``'s path axis).
        lmax_edge: ``L_e``.

    Returns:
        ``[S, F]``: for each ``l3`` (ascending), each path with that ``l3`` (path order), the
        ``[2l3+1, C]`` message, flattened.
    """
    dtype = radial.dtype
    y_off = np.cumsum([0] + [2 * l + 1 for l in range(lmax_edge + 1)])
    by_l1: dict[int, list[int]] = {}
    for p, (l1, _, _) in enumerate(paths):
        by_l1.setdefault(l1, []).append(p)
    msgs: dict[int, jnp.ndarray] = {}
    for l1, ps in by_l1.items():
        x = x_send[l1]  # [S, a, C]
        if l1 == 0:
            for p in ps:
                _, l2, l3 = paths[p]
                y = y_cat[:, y_off[l2] : y_off[l2 + 1]]  # [S, 2l2+1]
                k0 = coupling_tensor(0, l2, l3)[0]
                if not _is_identity(k0):
                    y = y @ jnp.asarray(k0, dtype)
                msgs[p] = y[:, :, None] * (radial[:, p] * x[:, 0])[:, None, :]
            continue
        kmat, g_off = _ky_matrix(paths, ps, l1, lmax_edge)
        a = 2 * l1 + 1
        ky = (y_cat @ jnp.asarray(kmat, dtype)).reshape(-1, a, g_off[-1])  # [S, a, G]
        for i, p in enumerate(ps):
            kp = ky[:, :, g_off[i] : g_off[i + 1]]
            t = sum(kp[:, al, :, None] * x[:, al, None, :] for al in range(a))  # [S, g, C]
            msgs[p] = t * radial[:, p, None, :]
    order = sorted(range(len(paths)), key=lambda p: (paths[p][2], p))
    return jnp.concatenate([msgs[p].reshape(msgs[p].shape[0], -1) for p in order], axis=-1)


def scan_edges(fn, xs: Sequence[jnp.ndarray], receivers, num_nodes: int, width: int, chunk):
    """``Σ_{e→i} fn(xs[e])`` as ``[num_nodes, width]``, over edge chunks of size ``chunk``.

    ``fn`` maps a chunk of every array in ``xs`` (leading edge axis) to ``[S, width]``; it is
    rematerialised in the backward pass. Padding rows added to fill the last chunk must give zero
    messages (callers pass an edge weight of 0 in ``xs``). ``chunk=None`` runs all edges at once.
    """
    n_edges = receivers.shape[0]
    dtype = xs[0].dtype
    if chunk is None or n_edges <= chunk:
        return jax.ops.segment_sum(fn(*xs), receivers, num_segments=num_nodes)
    n_chunks = -(-n_edges // chunk)
    pad = n_chunks * chunk - n_edges

    def split(x):
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)], axis=0)
        return x.reshape(n_chunks, chunk, *x.shape[1:])

    xs_c = [split(x) for x in xs]
    recv_c = split(receivers)
    body = jax.checkpoint(fn, prevent_cse=False)

    def step(acc, inp):
        xc, rc = inp
        return acc.at[rc].add(body(*xc)), None

    acc0 = jnp.zeros((num_nodes, width), dtype)
    acc, _ = jax.lax.scan(step, acc0, (xs_c, recv_c))
    return acc


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
            about 4 MiB of messages per chunk on CPU and no chunking on accelerators.
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
        """Return ``(A, s)``: A-basis ``l → [N, 2l+1, C_h]`` and self-connection ``l → [N, 2l+1, C]``.

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
        hu = [
            Linear(c, use_bias=self.bias and l == 0, param_dtype=pd, name=f"linear_up_{l}")(h[l])
            for l in self.input_ranks
        ]
        hu_cat = jnp.concatenate(hu, axis=1)  # [N, Σ(2l1+1), C]
        x_off = np.cumsum([0] + [2 * l + 1 for l in self.input_ranks])
        widths = (edge_feats.shape[-1], *self.radial_hidden, c * n_paths)
        radial_ws = DenseWeights(widths, "forward", pd, name="radial_net")(dtype)

        def chunk_messages(feats, ycat, snd, wgt):
            radial = (mlp_apply(radial_ws, feats) * wgt[:, None]).reshape(-1, n_paths, c)
            xg = hu_cat[snd]
            x_send = {
                l: xg[:, x_off[i] : x_off[i + 1]] for i, l in enumerate(self.input_ranks)
            }
            return edge_messages(x_send, ycat, radial, paths, self.lmax_edge)

        l3_counts = {}
        for _, _, l3 in paths:
            l3_counts[l3] = l3_counts.get(l3, 0) + 1
        width = sum(n * (2 * l3 + 1) * c for l3, n in l3_counts.items())
        chunk = self.edge_chunk
        if chunk == "auto":
            on_cpu = jax.default_backend() == "cpu"
            chunk = default_edge_chunk(width, jnp.dtype(dtype).itemsize) if on_cpu else None
        agg = scan_edges(
            chunk_messages,
            (edge_feats, y_cat, senders, edge_weight),
            receivers,
            n_nodes,
            width,
            chunk,
        )
        a_basis, off = {}, 0
        inv_n = 1.0 / self.avg_num_neighbors
        for l3 in sorted(l3_counts):
            n_q, g = l3_counts[l3], 2 * l3 + 1
            x = agg[:, off : off + n_q * g * c].reshape(n_nodes, n_q, g, c)
            off += n_q * g * c
            x = x.transpose(0, 2, 1, 3).reshape(n_nodes, g, n_q * c)  # channel index q·C + c
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


def default_edge_chunk(width: int, itemsize: int, target_bytes: int = 4 * 2**20) -> int:
    """Edges per chunk so that one chunk of messages takes about ``target_bytes``."""
    return max(64, int(2 ** math.floor(math.log2(max(1, target_bytes // (width * itemsize))))))
