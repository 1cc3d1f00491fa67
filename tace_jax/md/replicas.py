"""Batched replicas: one ``vmap``-ed :func:`~tace_jax.md.rollout.rollout` over independent seeds
and over structures of different sizes padded to one bucket.

:func:`replica_batch` pads every structure to ``bucket`` atoms (default: the largest). Padding
atoms have a zero node mask, species 0, mass 1, zero momentum and sit at the origin; the energy
masks them out (as the padded graphs of arXiv 2509.14961's batched model, docs/theory.md §2.1),
the neighbour list never lists them, and the shift function multiplies their displacement by
zero, so they neither move nor contribute, and a Langevin kick on them changes nothing (their
momenta are zeroed in the returned state; the default observables count real atoms only).

Inside the ``vmap`` each replica gets its own system: an energy function, a neighbour list and a
shift function that close over that replica's (traced) species, mask, masses and cell, so that
:func:`~tace_jax.md.rollout.rollout` runs unchanged. The neighbour list
(:class:`BucketNeighbors`) holds the pairs and lattice images within ``cutoff + skin`` (static
``[n, n, K]`` candidates, capacity fixed at allocation); it is rebuilt for all replicas at once
when an atom of any replica moved more than ``0.8·skin/2`` since the last build (one branch
for the batch, decided by a ``psum`` over the vmapped axis). A full list sets the overflow
flag, which raises :class:`~tace_jax.md.rollout.NeighborListOverflow` like any rollout.

Replica ``k`` of seed ``s_k`` equals a single :func:`~tace_jax.md.rollout.rollout` of structure
``k`` with ``key=PRNGKey(s_k)`` and momenta ``initial_momenta(atoms_k, T, s_k)`` to round-off
(jax's counter-based random numbers give the real atoms the same Langevin noise whatever the
bucket). Nosé–Hoover couples all degrees of freedom of a replica (a static count), so it needs
structures of one size and no padding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from ase import units

from tace_jax.data.fields import INPUTS
from tace_jax.data.graph import Graph
from tace_jax.inference._adapter import model_parts, species_of
from tace_jax.inference._md_inputs import collect_inputs, pad_inputs
from tace_jax.inference.jax_md import MDSystem
from tace_jax.inference.md_neighbors import REBUILD_FRACTION, MDNeighborFns, perpendicular_widths

from .config import md_config
from .rollout import _check, rollout
from .runners import initial_momenta

__all__ = ["BucketNeighbors", "ReplicaBatch", "replica_batch", "rollout_replicas"]

#: Name of the vmapped replica axis (the neighbour-list rebuild is decided across it).
AXIS = "replica"


@flax.struct.dataclass
class BucketNeighbors:
    """Neighbour list of one padded replica (jax-md protocol).

    Attributes:
        idx: ``[2, capacity]`` int32 ``(receiver, sender)``; empty slots hold ``bucket``.
        shifts: ``[capacity, 3]`` lattice shifts ``S`` (``x_r − x_s + S·L``).
        reference_position: positions at which the list was built.
        overflow: scalar bool (capacity exceeded at a build).
    """

    idx: Any
    shifts: Any
    reference_position: Any
    overflow: Any

    @property
    def did_buffer_overflow(self):
        return self.overflow


@dataclasses.dataclass(frozen=True)
class ReplicaBatch:
    """Padded, stacked replicas (leading axis ``B``) for :func:`rollout_replicas`.

    Attributes:
        parts: the potential's model parts.
        sizes: number of real atoms of each replica; bucket: padded size.
        pbc: ``[3]`` bool, common to all replicas.
        species, numbers: ``[B, bucket]`` int32; node_mask: ``[B, bucket]`` bool.
        masses: ``[B, bucket]`` amu (1 on padding); cells: ``[B, 3, 3]`` (rows; zeros
            without periodicity).
        positions, momenta: ``[B, bucket, 3]`` (zeros on padding).
        keys: ``[B, 2]`` Langevin keys ``PRNGKey(seed_k)``; seeds: the seeds.
        extras: model inputs, each ``[B, ...]`` (padded as the jax-md graph).
        nbrs: stacked :class:`BucketNeighbors`.
        translations: ``[K, 3]`` lattice translations searched; capacity: list capacity;
        radius: ``cutoff + skin``; skin: Å.
    """

    parts: Any
    sizes: tuple
    bucket: int
    pbc: np.ndarray
    species: Any
    numbers: Any
    node_mask: Any
    masses: Any
    cells: Any
    positions: Any
    momenta: Any
    keys: Any
    seeds: tuple
    extras: dict
    nbrs: Any
    translations: np.ndarray
    capacity: int
    radius: float
    skin: float

    @property
    def num_replicas(self) -> int:
        return len(self.sizes)


def _candidates(R, mask, cell, pbc, trans, radius):
    """Mask ``[n, n, K]`` of real pairs within ``radius`` and their shifts ``[n, n, K, 3]``
    (``pbc``: static numpy ``[3]``)."""
    n = R.shape[0]
    if np.any(pbc):
        f = R @ jnp.linalg.inv(cell)
        fl = jax.lax.stop_gradient(jnp.where(jnp.asarray(pbc), jnp.floor(f), 0.0))
    else:
        fl = jnp.zeros_like(R)
    s = trans[None, None] - fl[:, None, None, :] + fl[None, :, None, :]
    vec = (R[:, None, :] - R[None, :, :])[:, :, None, :] + s @ cell
    d2 = jnp.sum(vec * vec, axis=-1)
    zero = jnp.all(trans == 0, axis=-1)
    self_pair = jnp.eye(n, dtype=bool)[:, :, None] & zero[None, None, :]
    real = mask[:, None, None] & mask[None, :, None]
    return real & ~self_pair & (d2 < radius**2), jax.lax.stop_gradient(s)


def _build(R, mask, cell, pbc, trans, radius, capacity):
    hit, s = _candidates(R, mask, cell, pbc, trans, radius)
    n, k = R.shape[0], trans.shape[0]
    flat = hit.reshape(-1)
    (sel,) = jnp.nonzero(flat, size=capacity, fill_value=flat.shape[0])
    ok = sel < flat.shape[0]
    sel_c = jnp.where(ok, sel, 0)
    recv, rest = jnp.divmod(sel_c, n * k)
    send = rest // k
    shifts = s.reshape(-1, 3)[sel_c]
    idx = jnp.stack([jnp.where(ok, recv, n), jnp.where(ok, send, n)]).astype(jnp.int32)
    over = jnp.sum(flat) > capacity
    return idx, jnp.where(ok[:, None], shifts, 0.0), over


def _replica_system(batch: ReplicaBatch, data: dict, variables_default) -> MDSystem:
    """The :class:`MDSystem` of one replica from its (traced) row of ``batch``."""
    parts, pbc, n = batch.parts, batch.pbc, batch.bucket
    dtype = parts.dtype
    trans = jnp.asarray(batch.translations, dtype)
    mask, cell = data["node_mask"], data["cell"]
    pbc_j = jnp.asarray(pbc)
    periodic = bool(np.any(pbc))
    species_p = jnp.concatenate([data["species"], jnp.zeros((1,), jnp.int32)])
    numbers_p = jnp.concatenate([data["numbers"], jnp.zeros((1,), jnp.int32)])
    node_mask = jnp.concatenate([mask, jnp.zeros((1,), bool)])
    node_graph = jnp.where(node_mask, 0, 1).astype(jnp.int32)
    n_real = jnp.sum(mask).astype(jnp.int32)
    rc2 = parts.cutoff**2

    def make_energy(variables):
        def energy_fn(R, neighbor=None, box=None, perturbation=None, **unused):
            if neighbor is None:
                raise ValueError("replica energy_fn needs a neighbour list")
            c = cell if box is None else jnp.asarray(box, dtype).T
            x = jnp.asarray(R).astype(dtype)
            if perturbation is not None:
                p = jnp.asarray(perturbation, dtype)
                x, c = (x * p, c * p) if p.ndim == 0 else (x @ p.T, c @ p.T)
            recv, send = neighbor.idx[0], neighbor.idx[1]
            valid = recv < n
            shifts = neighbor.shifts.astype(dtype)
            if periodic:  # atoms wrapped since the list was built: correct their shifts
                f = (x - neighbor.reference_position) @ jnp.linalg.inv(c)
                w = jax.lax.stop_gradient(jnp.where(pbc_j, jnp.round(f), 0.0))
                w = jnp.concatenate([w, jnp.zeros((1, 3), dtype)])
                shifts = jnp.where(valid[:, None], shifts - w[recv] + w[send], 0.0)
            x = jnp.concatenate([x, jnp.zeros((1, 3), dtype)])
            vec = x[recv] - x[send] + shifts @ c
            graph = Graph(
                positions=x,
                species=species_p,
                numbers=numbers_p,
                node_mask=node_mask,
                node_graph=node_graph,
                senders=send,
                receivers=recv,
                shifts=shifts,
                edge_mask=valid & (jnp.sum(vec * vec, axis=-1) < rc2),
                cell=jnp.stack([c if periodic else jnp.zeros_like(c), jnp.zeros_like(c)]),
                pbc=jnp.stack([pbc_j, jnp.zeros(3, bool)]),
                graph_mask=jnp.array([True, False]),
                n_node=jnp.stack([n_real, jnp.zeros((), jnp.int32)]),
                extras=data["extras"],
            )
            return parts.apply_fn(variables, graph)["energy"][0]

        return energy_fn

    def update(R, nbrs, box=None, **unused):
        c = cell if box is None else jnp.asarray(box, dtype).T
        d = R - nbrs.reference_position
        if periodic:  # a wrap is not a move
            f = d @ jnp.linalg.inv(c)
            d = (f - jnp.where(pbc_j, jnp.round(f), 0.0)) @ c
        d2 = jnp.max(jnp.sum(d * d, axis=-1))
        # Verlet rule; one decision for the whole batch (psum over the vmapped axis), so
        # that the rebuild is a real branch and not computed for every step of every replica
        need = jax.lax.psum((d2 > (REBUILD_FRACTION * 0.5 * batch.skin) ** 2).astype(int), AXIS)

        def rebuild(_):
            x = jax.lax.stop_gradient(R)
            idx, shifts, over = _build(x, mask, c, pbc, trans, batch.radius, batch.capacity)
            return BucketNeighbors(idx, shifts, x, nbrs.overflow | over)

        # kept lists: every atom within 0.8·skin/2 of its build position, and the margin
        # covers the one step integrated with the list of the previous positions
        return jax.lax.cond(need > 0, rebuild, lambda _: nbrs, None)

    def allocate(*args, **kwargs):
        raise RuntimeError("replica neighbour lists are allocated by replica_batch")

    inv_cell = jnp.linalg.inv(cell) if periodic else None

    def shift_fn(R, dR, **unused):
        y = R + dR * mask[:, None]
        if not periodic:
            return y
        k = jax.lax.stop_gradient(jnp.where(pbc_j, jnp.floor(y @ inv_cell), 0.0))
        return y - k @ cell

    return MDSystem(
        energy_fn=make_energy(variables_default),
        neighbor_fn=MDNeighborFns(allocate=allocate, update=update, backend="bucket"),
        shift_fn=shift_fn,
        positions=data["positions"],
        masses=data["masses"],
        cell=cell,
        pbc=pbc,
        fractional=False,
        parts=parts,
        energy_fn_for=make_energy,
        inputs={},
    )


def _needed(cell, pbc, radius) -> np.ndarray:
    if not np.any(pbc):
        return np.zeros(3, int)
    widths = np.asarray(perpendicular_widths(np.asarray(cell, np.float64)))
    return np.where(pbc, np.ceil(radius / np.maximum(widths, 1e-12)).astype(int), 0)


def replica_batch(
    potential,
    structures: Sequence,
    seeds: Sequence[int] | None = None,
    momenta: Sequence | None = None,
    temperature: float = 300.0,
    bucket: int | None = None,
    skin: float = 0.5,
    capacity_multiplier: float = 1.25,
    dtype=None,
    **inputs,
) -> ReplicaBatch:
    """Pad ``structures`` to one bucket and allocate their neighbour lists (outside ``jit``).

    Args:
        potential: a :class:`~tace_jax.inference.protocol.PotentialProtocol`.
        structures: ``ase.Atoms`` (the same one repeated for independent seeds); all with the
            same ``pbc``.
        seeds: one per replica (default ``0, 1, …``): the initial momenta
            (:func:`~tace_jax.md.runners.initial_momenta` at ``temperature`` K) and the
            Langevin key ``PRNGKey(seed)``.
        momenta: ``[n_k, 3]`` per replica instead of drawing them (amu·Å/ASE time).
        bucket: padded number of atoms (default: the largest structure).
        skin: Å; capacity_multiplier: neighbour-list capacity margin.
        dtype: computation dtype (default: the potential's).
        **inputs: model inputs held fixed (as :func:`~tace_jax.inference.jax_md.md_system`).

    Raises:
        ValueError: no structure, mixed ``pbc``, a structure larger than ``bucket``, or a
            wrong number of seeds/momenta (naming the structure).
    """
    structures = list(structures)
    if not structures:
        raise ValueError("replica_batch: no structures")
    b = len(structures)
    seeds = tuple(range(b)) if seeds is None else tuple(int(x) for x in seeds)
    if len(seeds) != b:
        raise ValueError(f"replica_batch: {len(seeds)} seeds for {b} structures")
    if momenta is not None and len(momenta) != b:
        raise ValueError(f"replica_batch: {len(momenta)} momenta for {b} structures")
    parts = model_parts(potential, dtype)
    dt = parts.dtype
    sizes = tuple(len(a) for a in structures)
    n = max(sizes) if bucket is None else int(bucket)
    pbc = np.asarray(structures[0].get_pbc(), bool)
    radius = float(parts.cutoff + skin)
    need = np.zeros(3, int)
    rows = []
    for k, atoms in enumerate(structures):
        where = f"structure {k} ({atoms.get_chemical_formula()})"
        if sizes[k] > n:
            raise ValueError(f"replica_batch: {where} has {sizes[k]} atoms > bucket {n}")
        if not np.array_equal(np.asarray(atoms.get_pbc(), bool), pbc):
            raise ValueError(f"replica_batch: {where}: pbc differs from structure 0")
        m = sizes[k]
        pad = lambda a, v=0.0, m=m: np.concatenate([a, np.full((n - m, *a.shape[1:]), v)])
        cell = np.asarray(atoms.get_cell().array, np.float64) if pbc.any() else np.zeros((3, 3))
        need = np.maximum(need, _needed(cell, pbc, radius))
        p = initial_momenta(atoms, temperature, seeds[k]) if momenta is None else momenta[k]
        p = np.asarray(p, np.float64)
        if p.shape != (m, 3):
            raise ValueError(f"replica_batch: momenta of {where} have shape {p.shape}")
        vals = collect_inputs(atoms, parts.input_names, inputs, where, parts.input_limits)
        vals = {key: pad(np.asarray(v)) if INPUTS[key].per_node else v for key, v in vals.items()}
        z = atoms.get_atomic_numbers()
        rows.append(
            {
                "species": pad(species_of(z, parts.atomic_numbers, where), 0).astype(np.int32),
                "numbers": pad(z, 0).astype(np.int32),
                "node_mask": np.arange(n) < m,
                "masses": pad(atoms.get_masses(), 1.0),
                "cell": cell,
                "positions": pad(np.asarray(atoms.get_positions(), np.float64)),
                "momenta": pad(p),
                "extras": pad_inputs(vals, n, dt),
            }
        )
    ranges = [np.arange(-k, k + 1) for k in need]
    trans = np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, 3).astype(np.float64)
    stack = lambda key, t=dt: jnp.asarray(np.stack([r[key] for r in rows]), t)
    node_mask = jnp.asarray(np.stack([r["node_mask"] for r in rows]))
    cells, positions = stack("cell"), stack("positions")
    tj = jnp.asarray(trans, dt)
    count = jax.vmap(lambda R, m, c: jnp.sum(_candidates(R, m, c, pbc, tj, radius)[0]))(
        positions, node_mask, cells
    )
    capacity = max(1, int(math.ceil(capacity_multiplier * int(jnp.max(count)))))
    idx, shifts, over = jax.vmap(lambda R, m, c: _build(R, m, c, pbc, tj, radius, capacity))(
        positions, node_mask, cells
    )
    return ReplicaBatch(
        parts=parts,
        sizes=sizes,
        bucket=n,
        pbc=pbc,
        species=stack("species", jnp.int32),
        numbers=stack("numbers", jnp.int32),
        node_mask=node_mask,
        masses=stack("masses"),
        cells=cells,
        positions=positions,
        momenta=stack("momenta"),
        keys=jnp.stack([jax.random.PRNGKey(s) for s in seeds]),
        seeds=seeds,
        extras=jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[r["extras"] for r in rows]),
        nbrs=BucketNeighbors(idx, shifts, positions, over),
        translations=trans,
        capacity=capacity,
        radius=radius,
        skin=float(skin),
    )


def _masked_observe(state, neighbor, energy_fn, box, mask):
    """``epot``, ``ekin`` and ``temperature`` (3·n_real degrees of freedom) of real atoms."""
    epot = getattr(state, "energy", None)
    if epot is None:
        epot = energy_fn(state.position, neighbor=neighbor)
    m = jnp.reshape(state.mass, (-1, 1))
    ekin = 0.5 * jnp.sum(jnp.where(mask[:, None], state.momentum**2 / m, 0.0))
    n = jnp.sum(mask)
    return {"epot": epot, "ekin": ekin, "temperature": 2.0 * ekin / (3.0 * n * units.kB)}


def rollout_replicas(
    batch: ReplicaBatch,
    steps: int,
    ensemble: str = "nve",
    checkpoint_every: int | None = None,
    *,
    variables=None,
    observe: Callable | None = None,
    check_overflow: bool = True,
    config=None,
    **overrides,
):
    """All replicas of ``batch`` for ``steps`` steps in one ``vmap``-ed rollout.

    Args:
        batch: from :func:`replica_batch`.
        steps, ensemble, checkpoint_every, config, overrides: as
            :func:`~tace_jax.md.rollout.rollout` (one configuration for all replicas).
        variables: model variables shared by all replicas (traced to differentiate).
        observe: ``observe(state, neighbor, energy_fn, box, node_mask) -> pytree`` per replica
            and step (padded state; default: ``epot``, ``ekin``, ``temperature`` of the real
            atoms).
        check_overflow: raise :class:`~tace_jax.md.rollout.NeighborListOverflow` if any
            replica's list overflowed.

    Returns:
        ``(final, observables)``: the final states stacked over replicas (``[B, bucket, …]``;
        padding rows keep their position and have zero momentum) and the observables
        ``[B, steps, …]`` with ``"overflow"`` ``[B, steps]``.

    Raises:
        ValueError: Nosé–Hoover with padding (replicas of different sizes, or a larger bucket).
    """
    cfg = md_config(config, ensemble=ensemble, **overrides)
    if cfg.canonical_ensemble == "nvt_nose_hoover" and min(batch.sizes) != batch.bucket:
        raise ValueError(
            "rollout_replicas: Nosé–Hoover couples a static number of degrees of freedom; "
            f"sizes {batch.sizes} padded to {batch.bucket} need 'nve' or 'langevin'"
        )
    obs_fn = _masked_observe if observe is None else observe
    variables = batch.parts.variables if variables is None else variables
    data = {
        "species": batch.species,
        "numbers": batch.numbers,
        "node_mask": batch.node_mask,
        "masses": batch.masses,
        "cell": batch.cells,
        "positions": batch.positions,
        "extras": batch.extras,
    }

    def one(d, R, P, key, nb):
        system = _replica_system(batch, d, variables)
        final, obs = rollout(
            system,
            nb,
            (R, P),
            steps,
            cfg.ensemble,
            checkpoint_every,
            key=key,
            variables=variables,
            observe=lambda st, nbr, efn, box: obs_fn(st, nbr, efn, box, d["node_mask"]),
            check_overflow=False,
            config=cfg,
        )
        final = final.set(momentum=jnp.where(d["node_mask"][:, None], final.momentum, 0.0))
        return final, obs

    final, obs = jax.vmap(one, axis_name=AXIS)(
        data, batch.positions, batch.momenta, batch.keys, batch.nbrs
    )
    if check_overflow:
        _check(obs["overflow"], int(steps))
    return final, obs
