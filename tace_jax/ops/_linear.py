"""Channel-mixing maths shared by the linear modules (docs/theory.md §1.6).

Element-dependent linear maps have two evaluation paths with identical results:

* *select* (few elements): every element's weights in one GEMM, then each node's slice is
  picked. Its cost grows with the number of elements ``Z``.
* *grouped* (many elements, e.g. a universal model): nodes are sorted by element into tiles of
  ``tile`` rows, each tile holding one element (each element's group is padded to a multiple of
  the tile, so at most ``ceil(N/tile) + Z`` tiles: a static bound), and one batched matmul
  multiplies every tile by its element's weights. Its cost does not grow with ``Z`` beyond the
  ``Z·tile`` padding rows. ``jax.lax.ragged_dot`` would be the natural primitive but on CPU
  it lowers to a dense loop over all groups, slower than *select* (measured in
  ``benchmarks/bench_element_linear.py``).

Dense
chains (radial MLP, scalar readouts) scale each layer by a fixed ``α_k`` at forward time, which
depends on the init mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "GROUPED_MIN_ELEMENTS",
    "element_select",
    "element_linear",
    "element_linear_sum",
    "grouped_element_linear",
    "mlp_alphas",
    "mlp_apply",
]

#: ``element_linear(..., method="auto")`` takes the grouped path from this many elements on
#: (chosen with ``benchmarks/bench_element_linear.py``).
GROUPED_MIN_ELEMENTS = 16
#: Largest number of rows per tile of the grouped path (see :func:`grouped_element_linear`).
GROUPED_TILE = 16


def element_select(onehot: jnp.ndarray, y_all: jnp.ndarray) -> jnp.ndarray:
    """``Σ_z onehot[n, z] · y_all[n, ..., z, :]``: pick each node's element slice.

    ``y_all`` is ``[N, ..., Z, D]``; returns ``[N, ..., D]``.
    """
    oh = onehot.reshape(onehot.shape[0], *([1] * (y_all.ndim - 3)), onehot.shape[1], 1)
    return jnp.sum(oh * y_all, axis=-2)


def element_linear(
    x: jnp.ndarray, w: jnp.ndarray, onehot: jnp.ndarray, method: str = "auto"
) -> jnp.ndarray:
    """``y[n, m, d] = Σ_c w[z_n, d, c] x[n, m, c]`` for ``x [N, M, C_in]``, ``w [Z, D, C_in]``.

    Nodes whose ``onehot`` row is zero (padding) give zero. ``method``: ``"select"`` (every
    element in one GEMM, then each node's slice), ``"grouped"``
    (:func:`grouped_element_linear`) or ``"auto"`` (grouped from
    :data:`GROUPED_MIN_ELEMENTS` elements on).

    Examples:
        >>> import jax.numpy as jnp
        >>> w = jnp.stack([jnp.eye(2), 2 * jnp.eye(2)])  # [Z=2, D=2, C=2]
        >>> element_linear(jnp.ones((2, 1, 2)), w, jnp.eye(2)).tolist()
        [[[1.0, 1.0]], [[2.0, 2.0]]]
    """
    z, d, c = w.shape
    if method == "auto":
        method = "grouped" if z >= GROUPED_MIN_ELEMENTS else "select"
    if method == "grouped":
        return grouped_element_linear(x, w, onehot)
    if method != "select":
        raise ValueError(f"element_linear: method must be auto/select/grouped, got {method!r}")
    y_all = (x @ w.reshape(z * d, c).T).reshape(*x.shape[:-1], z, d)
    return element_select(onehot, y_all)


def element_linear_sum(
    xs: Sequence[jnp.ndarray],
    ws: Sequence[jnp.ndarray],
    scales: Sequence[float],
    onehot: jnp.ndarray,
    method: str = "auto",
) -> jnp.ndarray:
    """``Σ_k s_k · element_linear(xs[k], ws[k], onehot)``: one element-dependent linear map whose
    input channels come in blocks (the ``ν`` blocks of the product basis, docs/theory.md §2.6).

    Equal to ``element_linear(concat_k xs[k], concat_k s_k·ws[k], onehot)``, but on the *select*
    path neither the weights nor the inputs are concatenated or rescaled: each block is one GEMM
    against all elements' weights (contracting the weights' last axis in place), the scaled
    ``[…, Z, D]`` products are summed and each node's slice is selected once. Concatenating and
    scaling the weights inside the jitted function costs a copy of every weight per call.

    Args:
        xs: blocks ``[N, M, C_k]``.
        ws: weights ``[Z, D, C_k]``.
        scales: one constant factor per block.
        onehot: ``[N, Z]``.
        method: as in :func:`element_linear`.

    Examples:
        >>> import jax.numpy as jnp
        >>> w = jnp.stack([jnp.eye(2), 2 * jnp.eye(2)])
        >>> x = jnp.ones((2, 1, 2))
        >>> element_linear_sum([x, x], [w, w], [1.0, 0.5], jnp.eye(2)).tolist()
        [[[1.5, 1.5]], [[3.0, 3.0]]]
    """
    z, d, _ = ws[0].shape
    if method == "auto":
        method = "grouped" if z >= GROUPED_MIN_ELEMENTS else "select"
    if method != "select":
        x = jnp.concatenate(list(xs), axis=-1)
        w = jnp.concatenate([wk * s for wk, s in zip(ws, scales)], axis=-1)
        return element_linear(x, w, onehot, method)
    y_all = None
    for x, w, s in zip(xs, ws, scales):
        yk = jax.lax.dot_general(
            x, w.reshape(z * d, w.shape[-1]), (((x.ndim - 1,), (1,)), ((), ()))
        ) * jnp.asarray(s, x.dtype)
        y_all = yk if y_all is None else y_all + yk
    return element_select(onehot, y_all.reshape(*xs[0].shape[:-1], z, d))


def grouped_element_linear(
    x: jnp.ndarray, w: jnp.ndarray, onehot: jnp.ndarray, tile: int | None = None
) -> jnp.ndarray:
    """:func:`element_linear` by element-sorted tiles: cost independent of the element count.

    The nodes are sorted by element; each element's group starts on a tile boundary, so every
    tile of ``tile`` rows holds one element and is multiplied by that element's ``[D, C]``
    weights in one batched matmul. Shapes are static: ``ceil(N/tile) + Z`` tiles. The default
    ``tile = clip(N // (2Z), 1, GROUPED_TILE)`` keeps the padding rows ``Z·tile`` at most
    ``N/2`` (the nodes' element mix is not known at trace time).

    Examples:
        >>> import jax.numpy as jnp
        >>> w = jnp.stack([jnp.eye(2), 2 * jnp.eye(2)])
        >>> grouped_element_linear(jnp.ones((2, 1, 2)), w, jnp.eye(2)[::-1]).tolist()
        [[[2.0, 2.0]], [[1.0, 1.0]]]
    """
    n = x.shape[0]
    z_count, d, c = w.shape
    if tile is None:
        tile = max(1, min(GROUPED_TILE, n // (2 * z_count)))
    xm = x.reshape(n, -1, c)
    m = xm.shape[1]
    valid = jnp.sum(onehot, axis=-1)
    species = jnp.argmax(onehot, axis=-1).astype(jnp.int32)  # padding nodes: 0, masked below
    counts = jnp.bincount(species, length=z_count).astype(jnp.int32)
    padded = (counts + tile - 1) // tile * tile
    group_start = jnp.cumsum(padded) - padded  # first row of each element's group
    sorted_start = jnp.cumsum(counts) - counts  # its first index in the sorted order
    order = jnp.argsort(species, stable=True)
    rank = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    row = group_start[species] + rank - sorted_start[species]  # each node's row, all distinct
    n_tiles = -(-n // tile) + z_count
    rows = jnp.zeros((n_tiles * tile, m, c), x.dtype).at[row].set(xm)
    first_row = jnp.arange(n_tiles, dtype=jnp.int32) * tile
    tile_element = jnp.searchsorted(jnp.cumsum(padded), first_row, side="right")
    w_tiles = w[jnp.clip(tile_element, 0, z_count - 1)]  # [n_tiles, D, C]
    y = jnp.einsum("tsmc,tdc->tsmd", rows.reshape(n_tiles, tile, m, c), w_tiles)
    y = y.reshape(n_tiles * tile, m, d)[row] * valid[:, None, None].astype(x.dtype)
    return y.reshape(*x.shape[:-1], d)


def mlp_alphas(widths: Sequence[int], init: str = "forward") -> list[float]:
    """Forward-time scales ``α_k`` of an MLP with layer widths ``widths = [in, h1, …, out]``.

    * ``"forward"``: ``α_k = g_k/√fan_in_k`` with ``g = 1`` for the first layer, ``√2`` after.
    * ``"backward"``: ``α_k = g_k/√fan_out_k`` with ``g = √2``, except ``g = 1`` for the last
      layer (docs/theory.md §1.6).

    Examples:
        >>> mlp_alphas([4, 16, 1], "backward")
        [0.3535533905932738, 1.0]
    """
    n = len(widths) - 1
    out = []
    for k in range(n):
        fan_in, fan_out = widths[k], widths[k + 1]
        if init == "forward":
            g = 1.0 if k == 0 else math.sqrt(2.0)
            out.append(g / math.sqrt(fan_in))
        elif init == "backward":
            g = 1.0 if k == n - 1 else math.sqrt(2.0)
            out.append(g / math.sqrt(fan_out))
        else:
            raise ValueError(f"init must be 'forward' or 'backward', got {init!r}")
    return out


def mlp_apply(weights: Sequence[jnp.ndarray], x: jnp.ndarray) -> jnp.ndarray:
    """``x ← silu(x W_k)`` for every (already α-scaled) weight but the last, then ``x W_last``."""
    for k, w in enumerate(weights):
        x = x @ w
        if k < len(weights) - 1:
            x = jax.nn.silu(x)
    return x
