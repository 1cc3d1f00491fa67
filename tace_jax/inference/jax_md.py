"""jax-md adapter: a TACE potential as ``(energy_fn, neighbor_fn, shift_fn)``.

``energy_fn(R, neighbor, box=None, perturbation=None)`` builds the model :class:`Graph` inside
``jit`` from the neighbour list (fixed shapes from its capacity, invalid slots masked with
``edge_mask``; pairs beyond the cutoff are masked too, so the energy equals that of the exact
neighbour list used by :meth:`Potential.predict`). Units: Å, eV, amu; time in ASE units
(``ase.units.fs``).

Conventions follow jax-md: ``box`` has the lattice vectors as *columns* (``box = cell.T``), and
``perturbation`` (scalar or ``3×3``) multiplies every displacement, ``r′ = P·r``, which is how
:func:`jax_md.quantity.stress`, :func:`jax_md.quantity.pressure` and
:func:`jax_md.simulate.npt_nose_hoover` obtain ``∂E/∂ε``. With ``fractional_coordinates=True``
positions are fractional and ``jax.grad`` still returns Cartesian gradients (jax-md's
``space.transform`` rule), as jax-md's NPT integrator expects.

Model inputs beyond geometry (``electric_field``, ``level``, …; :mod:`tace_jax.data.fields`)
are fixed when the functions are built, from keyword arguments or ``atoms.info`` /
``atoms.arrays``: ``md_system(potential, atoms, electric_field=[0, 0, 0.1])`` integrates under a
constant field. ``energy_fn(..., inputs={"electric_field": E})`` evaluates at other (possibly
traced) values, e.g. to differentiate the energy with respect to the field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import space

from tace_jax.data.graph import Graph

from ._adapter import ModelParts, model_parts, species_of
from ._md_inputs import collect_inputs, pad_inputs
from .md_neighbors import ImageNeighborList, MDNeighborFns, make_neighbor_fns, mic_shifts

#: Neighbour-list defaults (``tace_jax.md.MDConfig`` takes its defaults from these).
DEFAULT_SKIN = 0.5
DEFAULT_CAPACITY_MULTIPLIER = 1.25
DEFAULT_NEIGHBOR_BACKEND = "auto"

__all__ = ["MDSystem", "md_system", "stress_fn", "pressure_fn"]


@dataclasses.dataclass(frozen=True)
class MDSystem:
    """Everything needed to integrate one structure with jax-md.

    Attributes:
        energy_fn: ``energy_fn(R, neighbor, box=None, perturbation=None) -> eV``.
        neighbor_fn: :class:`~tace_jax.inference.md_neighbors.MDNeighborFns`
            (``allocate``/``update``).
        shift_fn: jax-md shift function of the space.
        positions: initial positions (Cartesian, or fractional when ``fractional``), model dtype.
        masses: ``[N]`` amu.
        cell: ``[3, 3]`` initial cell (rows), zeros for molecules.
        pbc: ``[3]`` bool.
        fractional: positions are fractional coordinates.
        parts: the :class:`~tace_jax.inference._adapter.ModelParts` used.
        energy_fn_for: ``energy_fn_for(variables)`` rebuilds ``energy_fn`` with other model
            variables (e.g. traced ones, to differentiate a trajectory w.r.t. parameters).
        inputs: the fixed model inputs (``{name: array}``, unpadded; empty for a
            geometry-only model).

    It behaves as jax-md's triple ``(energy_fn, neighbor_fn, shift_fn)`` when unpacked or
    indexed: ``energy_fn, neighbor_fn, shift_fn = system``.
    """

    energy_fn: Any
    neighbor_fn: MDNeighborFns
    shift_fn: Any
    positions: Any
    masses: Any
    cell: Any
    pbc: np.ndarray
    fractional: bool
    parts: ModelParts
    energy_fn_for: Any = None
    inputs: dict = dataclasses.field(default_factory=dict)

    def _triple(self) -> tuple:
        return (self.energy_fn, self.neighbor_fn, self.shift_fn)

    def __iter__(self):
        return iter(self._triple())

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index):
        return self._triple()[index]

    @property
    def box(self):
        """jax-md box (lattice vectors as columns)."""
        return jnp.asarray(self.cell).T

    @property
    def periodic(self) -> bool:
        return bool(np.any(self.pbc))

    def to_cartesian(self, R, box=None):
        """Cartesian positions from the integrator's coordinates."""
        if not self.fractional:
            return R
        return R @ (self.box if box is None else box).T


def _perturb(x, cell, perturbation):
    p = jnp.asarray(perturbation, x.dtype)
    if p.ndim == 0:
        return x * p, cell * p
    return x @ p.T, cell @ p.T


def make_energy_fn(parts: ModelParts, species, numbers, cell, pbc, fractional: bool, inputs=None):
    """The jax-md energy function of one structure (see the module docstring).

    ``inputs`` are the fixed model inputs (:func:`~tace_jax.inference._md_inputs.collect_inputs`).
    """
    n = len(species)
    dtype = parts.dtype
    cell0 = jnp.asarray(cell, dtype)
    pbc_j = jnp.asarray(pbc)
    periodic = bool(np.any(pbc))
    pad_i = lambda a, v=0: jnp.concatenate(
        [jnp.asarray(a, jnp.int32), jnp.full((1,), v, jnp.int32)]
    )
    species_p, numbers_p = pad_i(species), pad_i(numbers)
    node_mask = jnp.arange(n + 1) < n
    node_graph = jnp.where(node_mask, 0, 1).astype(jnp.int32)
    fixed = pad_inputs(inputs or {}, n, dtype)
    rc2 = parts.cutoff**2

    def energy_fn(R, neighbor=None, box=None, perturbation=None, inputs=None, **unused):
        if neighbor is None:
            raise ValueError("energy_fn needs a neighbour list: energy_fn(R, neighbor=nbrs)")
        extras = fixed
        if inputs:
            other = sorted(set(inputs) - set(fixed))
            if other:
                raise ValueError(f"energy_fn: the model does not read input(s) {other}")
            extras = {**fixed, **pad_inputs(inputs, n, dtype)}
        R = jnp.asarray(R).astype(dtype)
        c = cell0 if box is None else jnp.asarray(box, dtype).T
        x = space.transform(c.T, R) if fractional else R
        recv, send = neighbor.idx[0], neighbor.idx[1]
        valid = (recv < n) & (send < n)
        recv, send = jnp.where(valid, recv, n), jnp.where(valid, send, n)
        if isinstance(neighbor, ImageNeighborList):
            f = R if fractional else R @ jnp.linalg.inv(c)
            c_ref = neighbor.reference_cell
            ref = neighbor.reference_position
            f0 = ref if fractional else ref @ jnp.linalg.inv(c_ref)
            wraps = jnp.where(pbc_j, jnp.round(f - f0), 0.0)
            wraps = jnp.concatenate([wraps, jnp.zeros((1, 3), wraps.dtype)])
            shifts = neighbor.shifts - wraps[recv] + wraps[send]
        elif periodic:
            shifts = mic_shifts(jnp.concatenate([R, R[:1]]), c, pbc_j, recv, send, fractional)
        else:
            shifts = jnp.zeros((recv.shape[0], 3), dtype)
        shifts = jax.lax.stop_gradient(jnp.where(valid[:, None], shifts, 0.0).astype(dtype))
        if perturbation is not None:
            x, c = _perturb(x, c, perturbation)
        x = jnp.concatenate([x, jnp.zeros((1, 3), dtype)])
        vec = x[recv] - x[send] + shifts @ c
        edge_mask = valid & (jnp.sum(vec * vec, axis=-1) < rc2)
        graph = Graph(
            positions=x,
            species=species_p,
            numbers=numbers_p,
            node_mask=node_mask,
            node_graph=node_graph,
            senders=send,
            receivers=recv,
            shifts=shifts,
            edge_mask=edge_mask,
            cell=jnp.stack([c if periodic else jnp.zeros_like(c), jnp.zeros_like(c)]),
            pbc=jnp.stack([pbc_j, jnp.zeros(3, bool)]),
            graph_mask=jnp.array([True, False]),
            n_node=jnp.array([n, 0], jnp.int32),
            extras=extras,
        )
        return parts.apply_fn(parts.variables, graph)["energy"][0]

    return energy_fn


def md_system(
    potential,
    atoms,
    capacity_multiplier: float = DEFAULT_CAPACITY_MULTIPLIER,
    skin: float = DEFAULT_SKIN,
    fractional_coordinates: bool = False,
    backend: str = DEFAULT_NEIGHBOR_BACKEND,
    dtype=None,
    **inputs,
) -> MDSystem:
    """The jax-md pieces for ``atoms``: the one builder of jax-md functions.

    Args:
        potential: a :class:`~tace_jax.inference.protocol.PotentialProtocol` (the trained
            ``Potential`` or a test double).
        atoms: ``ase.Atoms``; its cell and ``pbc`` define the space (free space without
            ``pbc``; ``space.periodic_general`` with the cell otherwise).
        capacity_multiplier: neighbour-list capacity margin.
        skin: Verlet skin in Å (pairs are listed up to ``cutoff + skin``).
        fractional_coordinates: integrate fractional positions (needed for jax-md NPT).
        backend: neighbour back end, ``"auto"``, ``"jax_md"`` or ``"image"`` (see
            :mod:`tace_jax.inference.md_neighbors`).
        dtype: computation dtype (default: the potential's).
        **inputs: model inputs held fixed (``electric_field=[0, 0, 0.1]``, ``level=1``, …);
            they override ``atoms.info`` / ``atoms.arrays``. Inputs the model does not read
            are ignored with a warning.

    Returns:
        an :class:`MDSystem`, which unpacks to jax-md's ``(energy_fn, neighbor_fn,
        shift_fn)``: ``energy_fn(R, neighbor, box=None, perturbation=None)`` in eV;
        ``neighbor_fn`` with ``allocate(R, extra_capacity=0, box=None)`` (outside ``jit``) and
        ``update(R, nbrs, box=None)`` (inside ``jit``), whose lists expose
        ``did_buffer_overflow``; and jax-md's ``shift_fn``.

    Raises:
        TypeError: an unknown keyword (neither an option nor a model input).
        ValueError: an element the model lacks, a missing or malformed model input, or
            fractional coordinates without a fully periodic cell.

    Example:
        >>> energy_fn, neighbor_fn, shift_fn = potential.jax_md(atoms)  # doctest: +SKIP
        >>> nbrs = neighbor_fn.allocate(R)  # doctest: +SKIP
        >>> e = jax.jit(energy_fn)(R, nbrs)  # doctest: +SKIP
    """
    parts = model_parts(potential, dtype)
    species = species_of(atoms.get_atomic_numbers(), parts.atomic_numbers, "atoms")
    bind = getattr(potential, "composition_apply_fn", None)
    if bind is not None:  # the composition is fixed: element-sorted linears (Potential)
        parts = dataclasses.replace(parts, apply_fn=bind(species))
    values = collect_inputs(atoms, parts.input_names, inputs, "atoms", parts.input_limits)
    pbc = np.asarray(atoms.get_pbc(), bool)
    cell = np.asarray(atoms.get_cell().array, np.float64) if pbc.any() else np.zeros((3, 3))
    fractional = bool(fractional_coordinates)
    if fractional and not pbc.all():
        raise ValueError("fractional_coordinates=True needs a fully periodic cell")
    pos = np.asarray(atoms.get_positions(), np.float64)
    if fractional:
        pos = pos @ np.linalg.inv(cell)
    if pbc.all():
        _, shift_fn = space.periodic_general(jnp.asarray(cell.T, parts.dtype), fractional)
    else:
        _, shift_fn = space.free()
    nfns = make_neighbor_fns(
        cell,
        pbc,
        parts.cutoff,
        skin=skin,
        capacity_multiplier=capacity_multiplier,
        fractional_coordinates=fractional,
        backend=backend,
        num_atoms=len(atoms),
    )
    numbers = atoms.get_atomic_numbers()

    def energy_fn_for(variables):
        new = dataclasses.replace(parts, variables=variables)
        return make_energy_fn(new, species, numbers, cell, pbc, fractional, values)

    return MDSystem(
        energy_fn=make_energy_fn(parts, species, numbers, cell, pbc, fractional, values),
        neighbor_fn=nfns,
        shift_fn=shift_fn,
        positions=jnp.asarray(pos, parts.dtype),
        masses=jnp.asarray(atoms.get_masses(), parts.dtype),
        cell=jnp.asarray(cell, parts.dtype),
        pbc=pbc,
        fractional=fractional,
        parts=parts,
        energy_fn_for=energy_fn_for,
        inputs=values,
    )


def stress_fn(energy_fn, R, neighbor, box=None):
    """Potential stress ``σ = (1/V)·∂E/∂ε`` (ASE sign, eV/Å³), ``[3, 3]``, via ``perturbation``.

    ``box`` (columns) is required for the volume.
    """
    eye = jnp.eye(3, dtype=jnp.asarray(box).dtype)
    u = lambda eps: energy_fn(R, neighbor=neighbor, box=box, perturbation=eye + eps)
    de = jax.grad(u)(jnp.zeros_like(eye))
    vol = jnp.abs(jnp.linalg.det(box))
    return 0.5 * (de + de.T) / vol


def pressure_fn(energy_fn, R, neighbor, box, kinetic_energy=0.0):
    """Pressure ``P = (2·KE − ∂E/∂ε)/(3V)`` (eV/Å³) with the kinetic term."""
    u = lambda eps: energy_fn(R, neighbor=neighbor, box=box, perturbation=1.0 + eps)
    de = jax.grad(u)(jnp.zeros((), jnp.asarray(box).dtype))
    vol = jnp.abs(jnp.linalg.det(box))
    return (2.0 * kinetic_energy - de) / (3.0 * vol)
