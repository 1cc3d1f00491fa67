"""Many irreducible couplings at once: interaction messages and product-basis steps.

Both the interaction (docs/theory.md §2.4) and the product basis (§2.6) evaluate a list of
couplings ``[X ⊗ Y]_{l3}`` (§1.5). In the compressed layout each coupling is a contraction with
the constant ``K^{(l1 l2 l3)}`` (:func:`coupling_tensor`). For the interaction, stacking the
``K`` of every path sharing ``l1`` turns the harmonics side into one GEMM per edge chunk (no
channel axis), followed by a channel-diagonal, unrolled sum over the ``2l1+1`` components of the
first operand, which XLA fuses into one loop vectorised over channels. The product basis
contracts ``K`` with the A-basis, which has a channel axis, so each path's ``K`` is applied as a
constant-coefficient sum fused the same way. Features are channels last, ``[..., 2l+1, C]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._coupling import coupling_tensor

__all__ = [
    "message_blocks",
    "block_order",
    "edge_message_blocks",
    "edge_messages",
    "product_step",
    "couple_batched",
]


@jax.custom_jvp
def _contract_components(ky: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """``t[s, γ, c] = Σ_α ky[s, α, γ] x[s, α, c]`` (per-edge, channel-diagonal).

    The value is an unrolled broadcast-multiply-sum (one vectorised loop over channels). In the
    tangent, the ``ky`` term is a batched matmul so that its transpose, the sum over channels
    for ``ky``'s cotangent, is a matmul too (as a plain reduction XLA:CPU rewrites it into a
    slow windowed reduction); the ``x`` term is the same fused sum as the value, so ``x``'s
    cotangent is a fused loop over the small ``γ`` axis rather than a batched matmul of tiny
    per-edge blocks (same-run A/B, E+F: 1.03-1.05x aspirin, 1.04x on the 192-atom water box;
    the training gradient unchanged, benchmarks/results/compare_reference.md). Bilinear, so
    every derivative order is exact.
    """
    return _sum_components(ky, x)


def _sum_components(ky: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    return jnp.sum(ky[:, :, :, None] * x[:, :, None, :], axis=1)


@_contract_components.defjvp
def _contract_components_jvp(primals, tangents):
    ky, x = primals
    dky, dx = tangents
    out = _sum_components(ky, x)
    return out, jnp.einsum("sag,sac->sgc", dky, x) + _sum_components(ky, dx)


def message_blocks(paths: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, list[int]]]:
    """The paths grouped by ``(l1, l3)`` (ascending), each group's paths in path order.

    Concatenating the groups' path lists gives the *block order* of the paths; within one
    ``l3``, the groups' paths in block order are in path order.

    Examples:
        >>> message_blocks([(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 1, 1)])
        [(0, 0, [0]), (0, 1, [1]), (1, 0, [3]), (1, 1, [2, 4])]
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for p, (l1, _, l3) in enumerate(paths):
        groups.setdefault((l1, l3), []).append(p)
    return [(l1, l3, ps) for (l1, l3), ps in sorted(groups.items())]


def block_order(paths: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """The path indices in the block order of :func:`message_blocks`.

    Examples:
        >>> block_order([(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 1, 1)]).tolist()
        [0, 1, 3, 2, 4]
    """
    return np.concatenate([ps for _, _, ps in message_blocks(paths)])


def _block_matrices(paths, lmax_edge: int) -> list[tuple[int, np.ndarray, list]]:
    """Per ``l1``: the ``KY`` matrix ``[Σ_l (2l+1), (2l1+1)·G]`` whose ``G`` output components
    are those of the ``l1``'s :func:`message_blocks` in block order, and the blocks
    ``(l3, n_paths, component offset)``."""
    y_off = np.cumsum([0] + [2 * l + 1 for l in range(lmax_edge + 1)])
    out: dict[int, tuple[list, list]] = {}
    for l1, l3, ps in message_blocks(paths):
        cols, blocks = out.setdefault(l1, ([], []))
        blocks.append((l3, len(ps), sum(k.shape[-1] for k in cols)))
        for p in ps:
            _, l2, _ = paths[p]
            k = np.zeros((y_off[-1], 2 * l1 + 1, 2 * l3 + 1))
            k[y_off[l2] : y_off[l2 + 1]] = coupling_tensor(l1, l2, l3).transpose(1, 0, 2)
            cols.append(k)
    return [(l1, np.concatenate(c, axis=2).reshape(y_off[-1], -1), b) for l1, (c, b) in out.items()]


def edge_message_blocks(
    x_send: dict[int, jnp.ndarray],
    y_cat: jnp.ndarray,
    radial: jnp.ndarray,
    paths: Sequence[tuple[int, int, int]],
    lmax_edge: int,
) -> list[jnp.ndarray]:
    """Per-edge messages ``R_p · [x_{l1} ⊗ Y_{l2}]_{l3}``, one array per ``(l1, l3)`` group.

    As :func:`edge_messages`, but ``radial [S, P, C]`` has its path axis in the block order of
    :func:`message_blocks`, and the result is, for each group of :func:`message_blocks`,
    ``[S, n_paths, 2l3+1, C]`` (its paths in path order). All paths of a group have the same
    ``2l3+1``, so the radial weight multiplies by a plain broadcast that XLA fuses into the
    coupling loop (grouped by ``l1`` alone, mixed ``l3`` made XLA:CPU materialise the radial
    weight of every component as a concatenation of broadcasts, forward and backward; the
    ``(l1, l3)`` groups measured 1.18× faster E+F on the 192-atom water box and a 1.21× faster
    training gradient, same-run A/B in benchmarks/results/compare_reference.md).
    """
    n_s, _, c = radial.shape
    sizes = [len(ps) for _, _, ps in message_blocks(paths)]
    # split (not slices): its transpose is one concatenate instead of a pad per piece
    r_blocks = iter(jnp.split(radial, np.cumsum(sizes)[:-1], axis=1))  # [S, n, C] per group
    outs = []
    for l1, kmat, blocks in _block_matrices(paths, lmax_edge):  # same group order
        ky = (y_cat @ jnp.asarray(kmat, radial.dtype)).reshape(n_s, 2 * l1 + 1, -1)  # [S, a, G]
        kys = jnp.split(ky, [off for _, _, off in blocks[1:]], axis=2)
        for (l3, n, _), ky_b in zip(blocks, kys):
            t = _contract_components(ky_b, x_send[l1])  # [S, n·(2l3+1), C]
            outs.append(t.reshape(n_s, n, 2 * l3 + 1, c) * next(r_blocks)[:, :, None, :])
    return outs


def edge_messages(
    x_send: dict[int, jnp.ndarray],
    y_cat: jnp.ndarray,
    radial: jnp.ndarray,
    paths: Sequence[tuple[int, int, int]],
    lmax_edge: int,
) -> jnp.ndarray:
    """Per-edge messages ``R_p · [x_{l1} ⊗ Y_{l2}]_{l3}`` of every path (docs/theory.md §2.4).

    Args:
        x_send: ``l1 → [S, 2l1+1, C]`` sender features (after Linear_up).
        y_cat: ``[S, Σ_l (2l+1)]`` concatenated harmonics ``Y_0..Y_{L_e}``.
        radial: ``[S, P, C]`` per-path radial weights.
        paths: the ``P`` paths (order of ``radial``'s path axis), lexicographic.
        lmax_edge: ``L_e``.

    Returns:
        ``[S, Σ_p (2l3_p+1), C]``: the ``[2l3+1, C]`` message of each path, in path order
        (the groups of :func:`edge_message_blocks`, back in path order).
    """
    order = block_order(paths)
    blocks = edge_message_blocks(x_send, y_cat, radial[:, order], paths, lmax_edge)
    per_path = [m for b in blocks for m in jnp.split(b, b.shape[1], axis=1)]  # block order
    by_path = dict(zip(order.tolist(), per_path))
    return jnp.concatenate([by_path[p][:, 0] for p in range(len(paths))], axis=1)


def couple_batched(t: jnp.ndarray, a: jnp.ndarray, l1: int, l2: int, l3: int) -> jnp.ndarray:
    """Channel-diagonal coupling of a stack ``t [N, 2l1+1, n, C]`` with ``a [N, 2l2+1, C]``.

    Returns ``[N, 2l3+1, n, C]`` = ``[t_k ⊗ a]_{l3}`` for every ``k`` (channels last). Reference
    implementation of one path; :func:`product_step` evaluates all paths sharing ``l1`` at once.
    """
    kt = coupling_tensor(l1, l2, l3)
    n_a = 2 * l1 + 1
    km = jnp.asarray(kt.transpose(0, 2, 1).reshape(-1, kt.shape[1]), t.dtype)  # [(α,γ), β]
    ak = jnp.einsum("gb,nbc->ngc", km, a).reshape(a.shape[0], n_a, 2 * l3 + 1, a.shape[-1])
    return jnp.sum(t[:, :, None, :, :] * ak[:, :, :, None, :], axis=1)


def product_step(
    prev: dict[int, jnp.ndarray], a_cat: jnp.ndarray, path_list, lmax_edge: int
) -> dict[int, jnp.ndarray]:
    """One correlation step ``𝔅⁽ᵛ⁻¹⁾ → 𝔅⁽ᵛ⁾`` of the product basis (docs/theory.md §2.6).

    Args:
        prev: ``l1 → [N, 2l1+1, n, C]`` (the tensors of ``𝔅⁽ᵛ⁻¹⁾_{l1}`` along axis 2).
        a_cat: ``[N, Σ_l (2l+1), C]`` concatenated A-basis.
        path_list: the ordered paths ``𝒬_ν``.
        lmax_edge: ``L_e``.

    Returns:
        ``l3 → [N, 2l3+1, n', C]`` with blocks in insertion order (path-major, then tensor).
    """
    y_off = np.cumsum([0] + [2 * l + 1 for l in range(lmax_edge + 1)])
    results: dict[int, jnp.ndarray] = {}
    for i, (l1, l2, l3) in enumerate(path_list):
        if l1 not in prev:
            continue
        # AK[n, α, γ, c] = Σ_β K[α, β, γ] A_{l2}[n, β, c]: a constant-coefficient sum that XLA
        # fuses into one loop over channels. (One GEMM per l1 with the K of its paths stacked
        # over all A components made XLA:CPU transpose [N, (α, Γ), C] to put channels first,
        # forward and backward: 1.12x slower E+F on Si1440, same-run A/B.)
        k = jnp.asarray(coupling_tensor(l1, l2, l3), a_cat.dtype)
        a2 = a_cat[:, y_off[l2] : y_off[l2 + 1]]
        ak = jnp.sum(k[None, :, :, :, None] * a2[:, None, :, None, :], axis=2)  # [N, α, γ, C]
        t = prev[l1]  # [N, α, k, C]
        results[i] = jnp.sum(t[:, :, None, :, :] * ak[:, :, :, None, :], axis=1)  # [N, γ, k, C]
    blocks: dict[int, list] = {}
    for i, (_, _, l3) in enumerate(path_list):
        if i in results:
            blocks.setdefault(l3, []).append(results[i])
    return {l3: jnp.concatenate(b, axis=2) for l3, b in blocks.items()}
