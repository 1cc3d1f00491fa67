"""Latent Ewald Summation energy, one structure or a padded batch (docs/theory.md §4).

LES (arXiv 2509.14961, docs/theory.md §4) turns per-atom latent charges into a long-range
energy in eV (charges in e, lengths in Å, ``ℵ = norm_factor = 1/(2ε₀)`` in eV·Å/e²):

* fully periodic structures: the reciprocal-space sum on a static k-grid
  (:mod:`.ewald_periodic`), minus the Gaussian self energy when ``remove_self_interaction``;
* non-periodic structures: the Gaussian-smeared Coulomb pair sum (:mod:`.ewald_molecule`),
  plus the Gaussian self energy when ``remove_self_interaction`` is False, so that both forms
  include or exclude the self term together.

A structure must be periodic along all three axes or none (mixed/slab ``pbc`` raises). Neutrality
is not imposed (tin-foil boundary, uniform background). Per-atom virials are not defined: the
reciprocal term is not split per atom.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .ewald_molecule import realspace_energy_graph
from .ewald_periodic import ewald_kgrid, reciprocal_energy_graph

__all__ = [
    "NORM_FACTOR",
    "NORM_FACTOR_V010",
    "latent_ewald",
    "latent_ewald_graph",
]

#: ``1/(2ε₀)`` in eV·Å/e² (ε₀ = 5.52635·10⁻³ e²/(eV·Å)); the default.
NORM_FACTOR = 90.4756
#: The constant used by the LES release that TACE v0.1.0 called (for parity with its models).
NORM_FACTOR_V010 = 90.0474


def _concrete(x):
    """Host numpy copy of ``x``, or None when it is traced."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _periodic_flags(pbc, num_graphs: int, where: str):
    """``[G]`` periodic flags; raises on mixed pbc when ``pbc`` is concrete."""
    p = _concrete(pbc)
    if p is None:
        return jnp.asarray(pbc, bool).reshape(num_graphs, 3)[:, 0], None
    p = np.broadcast_to(p.astype(bool), (num_graphs, 3))
    mixed = p.any(axis=1) & ~p.all(axis=1)
    if mixed.any():
        g = int(np.flatnonzero(mixed)[0])
        raise ValueError(
            f"{where}: structure {g} has pbc={p[g].tolist()}; LES needs pbc all True (periodic) "
            "or all False (molecule); slabs are not supported"
        )
    return jnp.asarray(p[:, 0]), p[:, 0]


def _as_float(x, dtype, name: str, where: str):
    x = jnp.asarray(x)
    if dtype is not None:
        dt = jnp.dtype(dtype)
        if dt == jnp.float64 and not jax.config.jax_enable_x64:
            raise ValueError(
                f"{where}: dtype float64 requested but jax_enable_x64 is off; call "
                "jax.config.update('jax_enable_x64', True) first"
            )
        return x.astype(dt)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def latent_ewald_graph(
    charges,
    positions,
    cell,
    pbc,
    node_graph,
    node_mask,
    num_graphs: int,
    kgrid=None,
    sigma: float = 1.0,
    dl: float = 2.0,
    remove_self_interaction: bool = True,
    norm_factor: float = NORM_FACTOR,
    *,
    molecules: bool = True,
    pair_chunk: int | None = None,
    dtype=None,
):
    """LES energy per graph of a padded batch, ``[G]`` in eV.

    Molecules and periodic cells may be mixed; padding nodes (``node_mask`` False) and padding
    graphs contribute exactly 0. Jit-able with ``num_graphs``, ``kgrid``, ``molecules``,
    ``pair_chunk`` and the scalar options static; differentiable in charges, positions, cell.

    Args:
        charges: ``[N]`` latent charges (e).
        positions: ``[N, 3]`` (Å).
        cell: ``[G, 3, 3]``, rows are lattice vectors (zeros for molecules).
        pbc: ``[G, 3]`` bool, each row all True or all False.
        node_graph: ``[N]`` int graph index; node_mask: ``[N]`` bool.
        num_graphs: ``G``.
        kgrid: static ``(N_1, N_2, N_3)`` (:func:`ewald_kgrid`, ``kgrid_fits``), shared by the
            batch. ``None``: computed from a concrete cell, or, when the batch has no periodic
            structure, the periodic term is skipped.
        sigma: Gaussian width σ (Å). dl: grid resolution (Å), ``k_c = 2π/dl``.
        remove_self_interaction: leave out the Gaussian self energy ``ℵΣq²/(σ(2π)^{3/2})``.
        norm_factor: ``ℵ = 1/(2ε₀)``; :data:`NORM_FACTOR_V010` for v0.1.0 parity.
        molecules: False skips the pair sum (a batch known to hold periodic cells only).
        pair_chunk: see :func:`tace_jax.ops.ewald_molecule.realspace_energy_graph`.
        dtype: compute dtype (default: that of ``positions``).
    """
    where = "latent_ewald_graph"
    positions = _as_float(positions, dtype, "positions", where)
    dt = positions.dtype
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"{where}: positions must be [N, 3], got {positions.shape}")
    n = positions.shape[0]
    charges = jnp.asarray(charges).astype(dt)
    if charges.shape != (n,):
        raise ValueError(f"{where}: charges must be [{n}], got {charges.shape}")
    cell = jnp.asarray(cell).astype(dt).reshape(num_graphs, 3, 3)
    node_graph = jnp.asarray(node_graph, jnp.int32)
    charges = jnp.where(jnp.asarray(node_mask, bool), charges, 0)
    periodic, periodic_host = _periodic_flags(pbc, num_graphs, where)

    any_periodic = periodic_host is None or bool(periodic_host.any())
    if kgrid is None and any_periodic:
        kgrid = ewald_kgrid(_concrete_cell(cell, where), dl, pbc=periodic_host)
    if periodic_host is not None:
        _check_cells(cell, periodic_host, where)
    energy = jnp.zeros((num_graphs,), dt)
    if any_periodic:
        energy = energy + reciprocal_energy_graph(
            charges, positions, cell, periodic, node_graph, num_graphs, kgrid,
            sigma=sigma, dl=dl, remove_self_interaction=remove_self_interaction,
            norm_factor=norm_factor,
        )  # fmt: skip
    if molecules:
        energy = energy + realspace_energy_graph(
            charges, positions, periodic, node_graph, num_graphs, sigma=sigma,
            remove_self_interaction=remove_self_interaction, norm_factor=norm_factor,
            pair_chunk=pair_chunk,
        )  # fmt: skip
    return energy


def _concrete_cell(cell, where: str) -> np.ndarray:
    c = _concrete(cell)
    if c is None:
        raise ValueError(
            f"{where}: the cell is traced (inside jit); pass a static kgrid=... computed on the "
            "host with tace_jax.ops.ewald_kgrid(cell, dl)"
        )
    return c


def _check_cells(cell, periodic_host: np.ndarray, where: str) -> None:
    c = _concrete(cell)
    if c is None:
        return
    det = np.linalg.det(np.asarray(c, np.float64).reshape(-1, 3, 3))
    bad = periodic_host & (np.abs(det) < 1e-6)
    if bad.any():
        g = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}: structure {g} is periodic but its cell volume is {det[g]:.3g}")


def latent_ewald(
    charges,
    positions,
    cell,
    pbc,
    sigma: float = 1.0,
    dl: float = 2.0,
    remove_self_interaction: bool = True,
    norm_factor: float = NORM_FACTOR,
    *,
    kgrid=None,
    pair_chunk: int | None = None,
    dtype=None,
):
    """LES energy (eV) of one structure (docs/theory.md §4).

    Periodic (``pbc`` all True): reciprocal-space sum over ``0 < |k| ≤ 2π/dl`` with damping
    ``e^{−σ²k²/2}``, for any triclinic cell. Non-periodic (all False): smeared Coulomb pair
    sum (chunked above :data:`~tace_jax.ops.ewald_molecule.AUTO_CHUNK_ABOVE` atoms).

    Under ``jit`` close over ``pbc`` (a host value) and pass a static ``kgrid``
    (:func:`~tace_jax.ops.ewald_kgrid`): the call then does not recompile when the cell changes
    within the grid. A traced ``pbc`` needs ``kgrid`` and evaluates both forms.

    Args:
        charges: ``[N]``; positions: ``[N, 3]``; cell: ``[3, 3]`` rows = lattice vectors;
            pbc: ``[3]`` bools or one bool.
        sigma, dl, remove_self_interaction, norm_factor, pair_chunk, dtype: see
            :func:`latent_ewald_graph`.
        kgrid: static k-grid (periodic only); default from the (concrete) cell.

    Returns:
        A scalar energy in eV.
    """
    where = "latent_ewald"
    positions = _as_float(positions, dtype, "positions", where)
    n = positions.shape[0] if positions.ndim == 2 else -1
    p = _concrete(pbc)
    if p is not None:
        p = np.broadcast_to(p.astype(bool), (3,))
        if p.any() and not p.all():
            raise ValueError(
                f"{where}: pbc={p.tolist()}; LES needs pbc all True (periodic) or all False "
                "(molecule); slabs are not supported"
            )
        periodic = bool(p[0])
        pbc_g = np.full((1, 3), periodic)
    else:
        if kgrid is None:
            raise ValueError(f"{where}: pbc is traced; pass a static kgrid=... (ewald_kgrid)")
        periodic = None
        pbc_g = jnp.broadcast_to(jnp.asarray(pbc, bool), (3,)).reshape(1, 3)
    cell = jnp.asarray(cell)
    if cell.shape != (3, 3):
        raise ValueError(f"{where}: cell must be [3, 3], got {cell.shape}")
    if periodic is False:
        cell = jnp.zeros((3, 3), positions.dtype)
        kgrid = None
    energy = latent_ewald_graph(
        charges, positions, cell[None], pbc_g, jnp.zeros((max(n, 0),), jnp.int32),
        jnp.ones((max(n, 0),), bool), 1, kgrid, sigma=sigma, dl=dl,
        remove_self_interaction=remove_self_interaction, norm_factor=norm_factor,
        molecules=periodic is not True, pair_chunk=pair_chunk,
    )  # fmt: skip
    return energy[0]
