"""Element-sorted node layout for element-dependent linear maps (docs/theory.md §1.6, §2.6).

The *select* path of :func:`tace_jax.ops.element_linear_sum` multiplies every node by the
weights of all ``Z`` elements and then keeps one slice, so its cost grows with ``Z`` (``Z = 4``
in the default configuration, 89 in a universal model). When the number of nodes of each
element is known on the host (one structure in a calculator or an MD run, a batch in the
predictor), the nodes can instead be laid out **sorted by element**, element ``z`` in a static
block of ``b_z`` rows, and each block multiplied by its own element's weights only: ``Σ_z b_z``
rows instead of ``Z·N``.

* :func:`element_budgets` (host, numpy): the static ``b_z`` of a batch (each count rounded up
  so that nearby compositions share a compiled shape; 0 for an absent element).
* :func:`element_layout` (device): the row of every node and the node of every row, computed
  once per forward pass from the species (a stable sort; padding nodes get no row).
* :func:`take_rows`: gather rows, an index past the end giving a zero row.
* :func:`sorted_element_linear_sum`: the blockwise element-linear of
  :func:`~tace_jax.ops.element_linear_sum` on the sorted layout (static slices, no selection).

The result equals the select path to rounding (tested in ``tests/ops/test_ops_element_sort.py``);
budgets smaller than the counts would drop nodes, so they must come from the same species
(:func:`element_budgets`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "element_budgets",
    "element_layout",
    "budgets_exceeded",
    "take_rows",
    "sorted_element_linear_sum",
]


def element_budgets(species, node_mask, num_elements: int, multiple: int = 4) -> tuple[int, ...]:
    """Static rows per element of the sorted layout: each real node count rounded up to
    ``multiple`` (0 for an element the batch lacks).

    Args:
        species: ``[N]`` element index of every node (host array).
        node_mask: ``[N]`` True for real nodes.
        num_elements: ``Z``.
        multiple: rounding of each count (fewer distinct shapes, a little padding).

    Examples:
        >>> element_budgets([0, 2, 2, 0, 1], [1, 1, 1, 1, 0], 3)
        (4, 0, 4)
    """
    sp = np.asarray(species).astype(np.int64)
    mask = np.asarray(node_mask).astype(bool)
    if sp.shape != mask.shape:
        raise ValueError(f"element_budgets: species {sp.shape} and node_mask {mask.shape} differ")
    real = sp[mask]
    if real.size and (real.min() < 0 or real.max() >= num_elements):
        raise ValueError(
            f"element_budgets: species must lie in [0, {num_elements}), got "
            f"[{real.min()}, {real.max()}]"
        )
    counts = np.bincount(real, minlength=num_elements)
    return tuple(int(-(-c // multiple) * multiple) for c in counts)


def _keys_and_counts(species, node_mask, z: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Sort key of every node (its element; ``z`` for padding, so padding sorts last) and the
    node count of every key ``[z + 1]``."""
    key = jnp.where(node_mask.astype(bool), species.astype(jnp.int32), z)
    return key, jnp.bincount(key, length=z + 1)


def element_layout(
    species: jnp.ndarray, node_mask: jnp.ndarray, budgets: Sequence[int]
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(perm, inv)`` of the element-sorted layout with static block sizes ``budgets``.

    Element ``z``'s nodes occupy rows ``off_z .. off_z + count_z − 1`` (``off_z = Σ_{y<z} b_y``)
    in node order. ``perm [Σ b_z]``: the node of every row (``N`` for an empty row);
    ``inv [N]``: the row of every node (``Σ b_z`` for a padding node). With
    :func:`take_rows`, ``take_rows(x, perm)`` lays node features out sorted and
    ``take_rows(y, inv)`` brings sorted rows back (zeros for padding nodes).

    Examples:
        >>> import jax.numpy as jnp
        >>> perm, inv = element_layout(jnp.array([1, 0, 1]), jnp.array([1, 1, 1]), (2, 2))
        >>> perm.tolist(), inv.tolist()
        ([1, 3, 0, 2], [2, 0, 3])
    """
    n = species.shape[0]
    z = len(budgets)
    total = int(sum(budgets))
    key, counts = _keys_and_counts(species, node_mask, z)
    order = jnp.argsort(key, stable=True)
    sorted_start = jnp.cumsum(counts) - counts
    offsets = jnp.asarray(np.concatenate([np.cumsum([0, *budgets])[:-1], [total]]), jnp.int32)
    key_sorted = key[order]
    rank = jnp.arange(n, dtype=jnp.int32) - sorted_start[key_sorted].astype(jnp.int32)
    row_sorted = jnp.where(key_sorted < z, offsets[key_sorted] + rank, total)
    inv = jnp.zeros(n, jnp.int32).at[order].set(row_sorted.astype(jnp.int32))
    perm = jnp.full(total, n, jnp.int32).at[row_sorted].set(order.astype(jnp.int32), mode="drop")
    return perm, inv


def budgets_exceeded(
    species: jnp.ndarray, node_mask: jnp.ndarray, budgets: Sequence[int]
) -> jnp.ndarray:
    """True when some element has more real nodes than its budget (the layout would drop them;
    the model then returns NaN energies rather than a silently wrong answer).

    Examples:
        >>> import jax.numpy as jnp
        >>> bool(budgets_exceeded(jnp.array([0, 0, 1]), jnp.array([1, 1, 1]), (1, 4)))
        True
    """
    _, counts = _keys_and_counts(species, node_mask, len(budgets))
    return jnp.any(counts[:-1] > jnp.asarray(np.asarray(budgets, np.int32)))


def take_rows(x: jnp.ndarray, idx: jnp.ndarray) -> jnp.ndarray:
    """``x[idx]`` along the first axis; an index ``≥ len(x)`` gives a zero row."""
    return jnp.take(x, idx, axis=0, mode="fill", fill_value=0)


def sorted_element_linear_sum(
    xs: Sequence[jnp.ndarray],
    ws: Sequence[jnp.ndarray],
    scales: Sequence[float],
    budgets: Sequence[int],
    weight_maps: Sequence | None = None,
) -> jnp.ndarray:
    """``Σ_k s_k · x_k W_k[z]ᵀ`` on the element-sorted layout: block ``z`` (``budgets[z]`` rows)
    times element ``z``'s weights only.

    Args:
        xs: blocks ``[Σ b_z, M, C_k]`` in the sorted layout (:func:`element_layout`).
        ws: weights ``[Z, D, C_k']``.
        scales: one constant factor per block.
        budgets: the static ``b_z``.
        weight_maps: optional per block ``None`` or a function ``[D, C_k'] → [D, C_k]`` applied
            to each present element's weights (the merge of equal product-basis tensors,
            :func:`~tace_jax.ops.merge_blocks`), so that only those elements' weights are
            touched.

    Returns:
        ``[Σ b_z, M, D]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> w = jnp.stack([jnp.eye(2), 2 * jnp.eye(2)])
        >>> sorted_element_linear_sum([jnp.ones((2, 1, 2))], [w], [1.0], (1, 1)).tolist()
        [[[1.0, 1.0]], [[2.0, 2.0]]]
    """
    m, d = xs[0].shape[1:-1], ws[0].shape[1]
    parts, off = [], 0
    for z, b in enumerate(budgets):
        if b == 0:
            continue
        y = None
        for k, (x, w, s) in enumerate(zip(xs, ws, scales)):
            xz = jax.lax.slice_in_dim(x, off, off + b, axis=0)
            wz = w[z] if weight_maps is None or weight_maps[k] is None else weight_maps[k](w[z])
            yk = jax.lax.dot_general(xz, wz, (((x.ndim - 1,), (1,)), ((), ())))
            yk = yk * jnp.asarray(s, x.dtype)
            y = yk if y is None else y + yk
        parts.append(y)
        off += b
    if not parts:
        return jnp.zeros((0, *m, d), xs[0].dtype)
    return jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
