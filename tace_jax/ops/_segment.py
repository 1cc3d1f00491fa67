"""Edge-to-node scatter sums, streamed over edge chunks (docs/theory.md §2.4).

The interaction block sums one message per edge at its receiver. Materialising all messages at
once costs ``E × width`` memory; :func:`scan_edges` instead runs the message function on chunks
of edges inside ``lax.scan`` (rematerialised in the backward pass) and scatter-adds each chunk
into the node accumulator. On CPU, touching fresh large buffers costs more than the arithmetic,
so streaming is also faster there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

__all__ = ["balanced_chunk", "scan_edges", "default_edge_chunk"]


def scan_edges(
    fn: Callable[..., jnp.ndarray | Sequence[jnp.ndarray]],
    xs: Sequence[jnp.ndarray],
    receivers: jnp.ndarray,
    num_nodes: int,
    width: int | Sequence[tuple[int, ...]],
    chunk: int | None,
) -> jnp.ndarray | list[jnp.ndarray]:
    """``Σ_{e→i} fn(xs[e])`` as ``[num_nodes, width]``, over edge chunks of size ``chunk``.

    Args:
        fn: maps a chunk of every array in ``xs`` (leading edge axis) to ``[S, width]`` (or,
            when ``width`` is a sequence of shapes, to a list of ``[S, *width[k]]``); it is
            rematerialised in the backward pass.
        xs: per-edge arrays ``[E, ...]``. Padding rows added to fill the last chunk must give
            zero messages (callers pass an edge weight of 0 in ``xs``).
        receivers: ``[E]`` receiving node of every edge.
        num_nodes: ``N``, the number of segments.
        width: the message width, or the trailing shape of each output of ``fn`` (several
            outputs, each kept in its own shape, avoid a concatenation and a layout copy).
        chunk: edges per chunk; ``None`` runs all edges at once.

    Returns:
        The per-node sums ``[num_nodes, width]`` (a list ``[num_nodes, *width[k]]`` when
        ``width`` is a sequence of shapes) in the dtype of ``xs[0]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.arange(5.0)[:, None]
        >>> scan_edges(lambda a: a, (x,), jnp.array([0, 1, 0, 1, 0]), 2, 1, 2).tolist()
        [[6.0], [4.0]]
    """
    multi = not isinstance(width, int)
    widths = [tuple(w) for w in width] if multi else [(width,)]
    call = (lambda *a: list(fn(*a))) if multi else (lambda *a: [fn(*a)])
    n_edges = receivers.shape[0]
    dtype = xs[0].dtype
    if chunk is None or n_edges <= chunk:
        out = [jax.ops.segment_sum(m, receivers, num_segments=num_nodes) for m in call(*xs)]
        return out if multi else out[0]
    n_chunks = -(-n_edges // chunk)
    chunk = balanced_chunk(n_edges, n_chunks)  # at most `chunk`; less padding in the last one
    pad = n_chunks * chunk - n_edges

    def split(x):
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)], axis=0)
        return x.reshape(n_chunks, chunk, *x.shape[1:])

    xs_c = [split(x) for x in xs]
    recv_c = split(receivers)
    body = jax.checkpoint(call, prevent_cse=False)

    def step(acc, inp):
        xc, rc = inp
        return [a.at[rc].add(m) for a, m in zip(acc, body(*xc))], None

    acc0 = [jnp.zeros((num_nodes, *w), dtype) for w in widths]
    acc, _ = jax.lax.scan(step, acc0, (xs_c, recv_c))
    return acc if multi else acc[0]


def balanced_chunk(n_edges: int, n_chunks: int, multiple: int = 8) -> int:
    """The smallest chunk (a multiple of ``multiple``, where that does not add a chunk) that
    covers ``n_edges`` in ``n_chunks`` chunks, so that the padding of the last chunk is small.

    Examples:
        >>> balanced_chunk(384, 2)   # not 2 × 256 = 512 rows
        192
        >>> balanced_chunk(1000, 3)
        336
    """
    even = -(-n_edges // n_chunks)
    rounded = -(-even // multiple) * multiple
    return rounded if -(-n_edges // rounded) == n_chunks else even


def default_edge_chunk(width: int, itemsize: int, target_bytes: int = 4 * 2**20) -> int:
    """Edges per chunk so that one chunk of messages takes about ``target_bytes``.

    A power of two, at least 64.

    Examples:
        >>> default_edge_chunk(1024, 4)
        1024
    """
    return max(64, int(2 ** math.floor(math.log2(max(1, target_bytes // (width * itemsize))))))
