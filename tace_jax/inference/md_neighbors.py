"""Neighbour lists for MD in jax-md's ``allocate``/``update`` protocol, any cell size.

Two back ends share one protocol (``nbrs = fns.allocate(R)``, ``nbrs = fns.update(R, nbrs)``
inside ``jit``, ``nbrs.did_buffer_overflow`` checked outside ``jit``):

* ``"jax_md"``: :func:`jax_md.partition.neighbor_list` in ``Sparse`` format, used for molecules
  (free space) and periodic cells whose perpendicular widths all exceed ``2·(r_c + skin)``. The
  minimum image is then unique, and the lattice shift of each pair is recomputed from the current
  positions (:func:`mic_shifts`).
* ``"image"`` (:class:`ImageNeighborList`): our own dense list over the pairs ``(i, j)`` and all
  lattice translations that can reach within ``r_c + skin``. It handles cells smaller than
  ``2·r_c`` (an atom sees several images of another, or of itself), mixed periodicity and
  triclinic cells. Memory is ``O(N² K)`` for ``K`` translations, so it is meant for small cells.

Positions may be Cartesian or fractional (``fractional_coordinates=True``, as jax-md's NPT
integrator uses). A ``box`` keyword (jax-md convention: lattice vectors are the *columns*) may be
passed to ``update`` when the cell changes. When the cell shrinks so much that the back end is no
longer valid, the list flags an overflow; reallocating (outside ``jit``) then picks a valid back
end. No neighbour is ever dropped silently: every way of missing one sets the overflow flag.
"""

from __future__ import annotations

import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition, space

__all__ = [
    "ImageNeighborList",
    "MDNeighborFns",
    "perpendicular_widths",
    "mic_shifts",
    "make_neighbor_fns",
    "REBUILD_FRACTION",
]

#: Lists hold pairs up to ``cutoff + skin`` and are rebuilt once an atom moved more than
#: ``REBUILD_FRACTION · skin / 2``. The margin covers the one step an integrator takes with the
#: list updated at the previous positions (up to ``(1 − REBUILD_FRACTION)·skin/2`` = 0.05 Å per
#: step for the default skin of 0.5 Å), so no pair inside the cutoff is ever missed.
REBUILD_FRACTION = 0.8


def perpendicular_widths(cell) -> jax.Array:
    """Distances between opposite faces of the cell (rows are lattice vectors), ``[3]``."""
    cell = jnp.asarray(cell)
    vol = jnp.abs(jnp.linalg.det(cell))
    cross = jnp.stack(
        [jnp.cross(cell[1], cell[2]), jnp.cross(cell[2], cell[0]), jnp.cross(cell[0], cell[1])]
    )
    return vol / jnp.linalg.norm(cross, axis=-1)


def _frac(R, cell, fractional: bool):
    """Fractional coordinates of ``R`` (rows of ``cell`` are lattice vectors)."""
    return R if fractional else R @ jnp.linalg.inv(cell)


def mic_shifts(R, cell, pbc, receivers, senders, fractional: bool = False) -> jax.Array:
    """Integer lattice shifts ``S`` of the minimum-image vectors ``x_r − x_s + S·L``, ``[E, 3]``.

    Valid when every perpendicular width exceeds twice the pair distances of interest.
    """
    f = _frac(R, cell, fractional)
    df = f[receivers] - f[senders]
    return jax.lax.stop_gradient(jnp.where(pbc, -jnp.round(df), 0.0))


@flax.struct.dataclass
class ImageNeighborList:
    """A dense neighbour list over pairs and lattice images (jax-md protocol).

    Attributes:
        idx: ``[2, capacity]`` int32 ``(receiver, sender)``; padding entries hold ``N``.
        shifts: ``[capacity, 3]`` lattice shifts ``S`` valid for ``reference_position``.
        reference_position: positions at the last rebuild (Cartesian or fractional).
        reference_cell: ``[3, 3]`` cell (rows) at the last rebuild.
        overflow: scalar bool; ``True`` when pairs did not fit or the cell shrank too much.
        max_occupancy: static capacity.
        n_images: static ``(n_a, n_b, n_c)``: translations ``|t_k| ≤ n_k`` are searched.
        update_fn: static ``update_fn(R, nbrs, **kw)``.
    """

    idx: Any
    shifts: Any
    reference_position: Any
    reference_cell: Any
    overflow: Any
    max_occupancy: int = flax.struct.field(pytree_node=False)
    n_images: tuple = flax.struct.field(pytree_node=False)
    update_fn: Any = flax.struct.field(pytree_node=False)

    @property
    def did_buffer_overflow(self):
        return self.overflow

    def update(self, position, **kwargs) -> ImageNeighborList:
        return self.update_fn(position, self, **kwargs)


@flax.struct.dataclass
class MDNeighborFns:
    """``allocate(R, extra_capacity=0, box=None)`` (not jittable) and ``update(R, nbrs, box=None)``.

    Attributes:
        allocate: builds a new list, choosing the back end for the current cell.
        update: updates a list inside ``jit``; flags an overflow if the cell became too small.
        backend: ``"auto"``, ``"jax_md"`` or ``"image"`` as requested.
    """

    allocate: Any = flax.struct.field(pytree_node=False)
    update: Any = flax.struct.field(pytree_node=False)
    backend: str = flax.struct.field(pytree_node=False, default="auto")

    def __call__(self, position, neighbors=None, extra_capacity: int = 0, **kwargs):
        if neighbors is None:
            return self.allocate(position, extra_capacity=extra_capacity, **kwargs)
        return self.update(position, neighbors, **kwargs)


def _translations(n_images) -> np.ndarray:
    ranges = [np.arange(-n, n + 1) for n in n_images]
    grid = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid.astype(np.float64)


def _image_candidates(R, cell, pbc, n_images, radius, fractional):
    """Mask ``[N, N, K]`` of (receiver, sender, translation) closer than ``radius`` and shifts."""
    trans = jnp.asarray(_translations(n_images), cell.dtype)  # [K, 3]
    f = _frac(R, cell, fractional)
    fl = jnp.where(pbc, jnp.floor(f), 0.0)
    fw = f - fl  # wrapped along periodic axes
    a = (fw[:, None, :] - fw[None, :, :]) @ cell  # [N, N, 3] receiver − sender
    b = trans @ cell  # [K, 3]
    d2 = (
        jnp.sum(a * a, -1)[:, :, None]
        + 2.0 * jnp.einsum("ijc,kc->ijk", a, b)
        + jnp.sum(b * b, -1)[None, None, :]
    )
    n = R.shape[0]
    is_zero = jnp.all(trans == 0, axis=-1)
    self_pair = jnp.eye(n, dtype=bool)[:, :, None] & is_zero[None, None, :]
    mask = (d2 < radius**2) & ~self_pair
    # S = t − floor(f_r) + floor(f_s) so that x_r − x_s + S·L is the candidate vector
    return mask, trans, fl


def _needed_images(cell, pbc, radius) -> np.ndarray:
    widths = np.asarray(perpendicular_widths(np.asarray(cell, np.float64)))
    need = np.ceil(radius / np.maximum(widths, 1e-12)).astype(int)
    return np.where(np.asarray(pbc), need, 0)


def _make_image_fns(cell0, pbc, cutoff, skin, capacity_multiplier, fractional):
    radius = float(cutoff + skin)
    pbc_j = jnp.asarray(pbc)

    def build(R, cell, n_images, capacity):
        mask, trans, fl = _image_candidates(R, cell, pbc_j, n_images, radius, fractional)
        count = jnp.sum(mask)
        flat = jnp.nonzero(mask.reshape(-1), size=capacity, fill_value=-1)[0]
        n, k = R.shape[0], trans.shape[0]
        valid = flat >= 0
        flat = jnp.maximum(flat, 0)
        recv, rest = flat // (n * k), flat % (n * k)
        send, t = rest // k, rest % k
        shifts = trans[t] - fl[recv] + fl[send]
        idx = jnp.stack([jnp.where(valid, recv, n), jnp.where(valid, send, n)]).astype(jnp.int32)
        shifts = jnp.where(valid[:, None], shifts, 0.0)
        return idx, shifts, count

    def too_small(cell, n_images):
        widths = perpendicular_widths(cell)
        need = jnp.ceil(radius / widths)
        return jnp.any(pbc_j & (need > jnp.asarray(n_images)))

    def update(R, nbrs: ImageNeighborList, box=None, **unused):
        cell = nbrs.reference_cell if box is None else jnp.asarray(box).T
        cap, n_images = nbrs.max_occupancy, nbrs.n_images

        def rebuild(_):
            idx, shifts, count = build(R, cell, n_images, cap)
            return nbrs.replace(
                idx=idx,
                shifts=shifts,
                reference_position=R,
                reference_cell=cell,
                overflow=nbrs.overflow | (count > cap) | too_small(cell, n_images),
            )

        if skin <= 0.0:
            return rebuild(None)
        # displacement since the last rebuild, corrected for wrapping and cell change
        f, f0 = (
            _frac(R, cell, fractional),
            _frac(nbrs.reference_position, nbrs.reference_cell, fractional),
        )
        wraps = jnp.where(pbc_j, jnp.round(f - f0), 0.0)
        disp = (f - wraps) @ cell - f0 @ nbrs.reference_cell
        max_t = float(max(n_images) + 1)
        dcell = jnp.max(jnp.linalg.norm(cell - nbrs.reference_cell, axis=-1))
        moved = jnp.max(jnp.linalg.norm(disp, axis=-1)) + max_t * dcell
        return jax.lax.cond(moved > REBUILD_FRACTION * 0.5 * skin, rebuild, lambda _: nbrs, None)

    def allocate(
        R, extra_capacity: int = 0, box=None, min_capacity: int = 0, min_images=None, **unused
    ) -> ImageNeighborList:
        cell = cell0 if box is None else np.asarray(box).T
        cell = jnp.asarray(cell, R.dtype)
        n_images = _needed_images(cell, pbc, radius)
        if min_images is not None:
            n_images = np.maximum(n_images, np.asarray(min_images))
        n_images = tuple(int(v) for v in n_images)
        n = R.shape[0]
        full = n * n * len(_translations(n_images))
        mask = _image_candidates(R, cell, pbc_j, n_images, radius, fractional)[0]
        cap = int(math.ceil(int(jnp.sum(mask)) * capacity_multiplier)) + int(extra_capacity)
        cap = max(min(max(cap, int(min_capacity)), full), 1)
        idx, shifts, _ = build(R, cell, n_images, cap)
        return ImageNeighborList(
            idx=idx,
            shifts=shifts,
            reference_position=R,
            reference_cell=cell,
            overflow=jnp.asarray(False),
            max_occupancy=cap,
            n_images=n_images,
            update_fn=update,
        )

    return allocate, update


def _make_jax_md_fns(cell0, pbc, cutoff, skin, capacity_multiplier, fractional, use_cell_list):
    periodic = bool(np.all(pbc))
    radius = float(cutoff + skin)
    if periodic:
        box0 = jnp.asarray(np.asarray(cell0).T)
        displacement, _ = space.periodic_general(box0, fractional_coordinates=fractional)
    else:
        box0 = jnp.asarray(1.0)
        displacement, _ = space.free()
    # listing radius cutoff + skin; rebuild once an atom moved REBUILD_FRACTION·skin/2
    nl = partition.neighbor_list(
        displacement,
        box0,
        r_cutoff=float(cutoff + (1.0 - REBUILD_FRACTION) * skin),
        dr_threshold=float(REBUILD_FRACTION * skin),
        capacity_multiplier=capacity_multiplier,
        disable_cell_list=not use_cell_list,
        fractional_coordinates=fractional and periodic,
        format=partition.NeighborListFormat.Sparse,
    )

    def box_kwargs(box):
        return {} if (box is None or not periodic) else {"box": box}

    def check_box(nbrs, box):
        if box is None or not periodic:
            return nbrs
        small = jnp.any(perpendicular_widths(jnp.asarray(box).T) <= 2.0 * radius)
        err = nbrs.error.update(partition.PEC.NEIGHBOR_LIST_OVERFLOW, small)
        return nbrs.set(error=err)

    def allocate(R, extra_capacity: int = 0, box=None, min_capacity: int = 0, **unused):
        nbrs = nl.allocate(R, extra_capacity=extra_capacity, **box_kwargs(box))
        if nbrs.max_occupancy < min_capacity:  # Sparse: extra capacity counts per atom
            per_atom = -(-(int(min_capacity) - nbrs.max_occupancy) // R.shape[0])
            nbrs = nl.allocate(R, extra_capacity=extra_capacity + per_atom, **box_kwargs(box))
        return check_box(nbrs, box)

    def update(R, nbrs, box=None, **unused):
        return check_box(nl.update(R, nbrs, **box_kwargs(box)), box)

    return allocate, update


def make_neighbor_fns(
    cell,
    pbc,
    cutoff: float,
    skin: float = 0.5,
    capacity_multiplier: float = 1.25,
    fractional_coordinates: bool = False,
    backend: str = "auto",
    cell_list_min_atoms: int = 2048,
    num_atoms: int = 0,
) -> MDNeighborFns:
    """Neighbour-list functions for one system (see the module docstring).

    Args:
        cell: ``[3, 3]`` initial cell, lattice vectors as rows (ignored without ``pbc``).
        pbc: three bools.
        cutoff: model cutoff (Å); pairs are listed up to ``cutoff + skin``.
        skin: Verlet skin (Å); the list is rebuilt when an atom moved more than
            ``REBUILD_FRACTION·skin/2``.
        capacity_multiplier: capacity margin over the pairs found at allocation.
        fractional_coordinates: positions are fractional (jax-md NPT convention).
        backend: ``"auto"`` (jax-md where the minimum image is valid, else images),
            ``"jax_md"`` (raise if the cell is too small) or ``"image"``.
        cell_list_min_atoms: use jax-md's cell list from this many atoms on (fractional
            coordinates and an upper-triangular box only; else an ``O(N²)`` search).
        num_atoms: number of atoms (for the cell-list decision).

    Raises:
        ValueError: for an unknown backend, or ``backend="jax_md"`` with a cell narrower than
            ``2·(cutoff + skin)``.
    """
    if backend not in ("auto", "jax_md", "image"):
        raise ValueError(f"neighbour backend must be 'auto', 'jax_md' or 'image', got {backend!r}")
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,)).copy()
    cell = np.asarray(cell, np.float64).reshape(3, 3)
    radius = float(cutoff + skin)
    mixed = bool(pbc.any() and not pbc.all())
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-8:
        raise ValueError(
            f"periodic system (pbc={pbc.tolist()}) with a degenerate cell {cell.tolist()}"
        )
    widths = np.asarray(perpendicular_widths(cell)) if pbc.any() else np.full(3, np.inf)
    small = bool(np.any(widths[pbc] <= 2.0 * radius)) if pbc.any() else False

    if backend == "jax_md" and (small or mixed):
        raise ValueError(
            f"jax-md's neighbour list needs a fully periodic cell (or none) with perpendicular "
            f"widths > 2·(cutoff + skin) = {2 * radius:.3f} Å; got pbc={pbc.tolist()}, widths "
            f"{np.round(widths, 3).tolist()} Å. Use backend='image' (or 'auto')."
        )
    box_upper = bool(np.allclose(np.triu(cell.T), cell.T))
    use_cl = fractional_coordinates and box_upper and num_atoms >= cell_list_min_atoms
    image_fns = _make_image_fns(
        cell, pbc, cutoff, skin, capacity_multiplier, fractional_coordinates
    )
    jm_fns = None
    if not mixed:
        jm_fns = _make_jax_md_fns(
            cell, pbc, cutoff, skin, capacity_multiplier, fractional_coordinates, use_cl
        )

    def allocate(R, extra_capacity: int = 0, box=None, hint=None, **kw):
        """Allocate outside ``jit``; ``hint`` (a list allocated elsewhere, e.g. where a chunk
        overflowed) sets a minimum capacity, and forces the image back end if it used it."""
        use_image = (backend == "image" and pbc.any()) or mixed
        use_image = use_image or isinstance(hint, ImageNeighborList)
        if not use_image and pbc.any():
            cur = cell if box is None else np.asarray(box).T
            too_small = bool(np.any(np.asarray(perpendicular_widths(cur)) <= 2.0 * radius))
            if too_small and backend == "jax_md":
                raise ValueError(
                    "the cell became narrower than 2·(cutoff + skin); jax-md's minimum-image "
                    "neighbour list cannot represent it (use backend='auto' or 'image')"
                )
            use_image = too_small
        if hint is not None:
            kw["min_capacity"] = max(int(kw.get("min_capacity", 0)), hint.max_occupancy)
            if isinstance(hint, ImageNeighborList) and use_image:
                kw["min_images"] = hint.n_images
        fns = image_fns if use_image else jm_fns
        return fns[0](R, extra_capacity=extra_capacity, box=box, **kw)

    def update(R, nbrs, box=None, **kw):
        fns = image_fns if isinstance(nbrs, ImageNeighborList) else jm_fns
        return fns[1](R, nbrs, box=box, **kw)

    return MDNeighborFns(allocate=allocate, update=update, backend=backend)
