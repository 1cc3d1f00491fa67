"""The Latent Ewald Summation term of the TACE model (arXiv 2509.14961, docs/theory.md §4).

* **Charges.** ``les_charge_source="latent"``: ``q_i = s · Σ_t ρ_t(h^{(t)}_{i,0})``, a scalar
  readout (the energy readout's architecture) summed over the readout layers, times
  ``s = les_output_scale`` (1 when ``None``, as v0.1.0). The charges are not supervised.
  ``"lagrangian"``: the charges of the lagrangian charge head, which sum to ``total_charge``.
* **Energy.** ``E_LES`` per graph from :func:`tace_jax.ops.latent_ewald_graph` (reciprocal sum
  for periodic cells, smeared Coulomb for molecules) is added to the total energy before any
  derivative, so forces, stress, Hessians and responses include it.
* **Per-atom split.** ``E_LES`` is a homogeneous quadratic form in the charges, so with the
  potential ``φ_i = ∂E_LES/∂q_i`` the atomic shares ``½ q_i φ_i`` sum exactly to ``E_LES``
  (Euler's theorem). They are added to ``node_energy``, so ``Σ_i node_energy_i = energy``.
  This split of the energy is a convention.
* **Per-atom virials: not split.** The reciprocal energy ``(ℵ/V) Σ_k w_k e^{−σ²k²/2}
  |S(k)|²/k²`` couples every pair of atoms through ``S(k)``, has no per-edge form, and depends
  on the cell explicitly (``V``, ``k = 2πn L^{−T}``), not only through edge vectors. So the
  total stress/virial is the strain derivative of the whole energy at fixed fractional
  coordinates (``compute_properties(..., method="positions")``, what ``Potential`` uses for LES
  models) and includes the reciprocal term exactly, while ``atomic_virials``,
  ``atomic_stresses`` and ``edge_forces`` are not offered for LES models: ``predict`` rejects
  them (``ValueError``) rather than return a per-atom split that would omit or arbitrarily
  apportion the reciprocal part. The smeared Coulomb sum of molecules has no stress.
* **k-grid.** The reciprocal sum runs on a static grid (``kgrid``, hashable): a caller under
  ``jit`` passes it (``()`` asserts that the batch holds no periodic structure); eagerly it is
  computed from the concrete cell. :func:`grow_kgrid` is the bucketing rule of ``Potential``.
* **Born charges.** :func:`les_born_charges` differentiates ``P = √ε∞ Σ q_i x_i`` (molecules;
  the Berry-phase form for cells) with the latent charges as a function of the positions
  (:func:`tace_jax.ops.les_bec_graph`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.data.graph import Graph
from tace_jax.ops import ewald_kgrid, kgrid_fits, latent_ewald_graph, les_bec_graph

__all__ = [
    "les_outputs",
    "resolve_kgrid",
    "grow_kgrid",
    "batch_les_static",
    "dataset_les_static",
    "check_kgrid_fits",
    "ensure_kgrid",
    "les_born_charges",
]

logger = logging.getLogger("tace_jax")


def resolve_kgrid(kgrid, graph: Graph, dl: float, initializing: bool = False):
    """The static k-grid to use: ``kgrid`` if given, ``()`` at init or for a concrete batch
    without periodic structures, the needed grid of a concrete batch, else a clear error."""
    if kgrid is not None:
        return tuple(int(v) for v in kgrid)
    if initializing:
        return ()  # the parameters do not depend on the grid
    try:
        pbc = np.asarray(graph.pbc, bool).reshape(-1, 3)
        mask = np.asarray(graph.graph_mask, bool)
        cell = np.asarray(graph.cell)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as err:
        raise ValueError(
            "TACE (LES): under jit the k-grid must be static; set TACE(..., les_kgrid=...) to "
            "tace_jax.ops.ewald_kgrid(cell, config.les_dl) (or () for molecules only); with a "
            "Potential, call potential.prepare_les(atoms) first"
        ) from err
    periodic = pbc.all(axis=1) & mask
    return ewald_kgrid(cell[periodic], dl) if periodic.any() else ()


def les_outputs(cfg, graph: Graph, q, kgrid, molecules: bool = True) -> dict:
    """``latent_charges [N]``, ``les_energy [G]`` and ``les_node_energy [N]`` (½ q φ).

    Args:
        cfg: the :class:`~tace_jax.models.TACEConfig` (``les_*`` fields).
        graph: the padded batch (positions, cell, pbc).
        q: ``[N]`` charges (already scaled; padding rows are zeroed here).
        kgrid: static grid, or ``()``: no periodic structure in the batch.
        molecules: False skips the pair sum (the batch holds periodic cells only).
    """
    dtype = graph.positions.dtype
    q = jnp.where(graph.node_mask, q.astype(dtype), 0.0)
    g = graph.num_graphs
    pbc = np.zeros((g, 3), bool) if kgrid == () else graph.pbc

    def energy(charges):
        return latent_ewald_graph(
            charges, graph.positions, graph.cell, pbc, graph.node_graph, graph.node_mask, g,
            kgrid or None, sigma=cfg.les_sigma, dl=cfg.les_dl,
            remove_self_interaction=cfg.les_remove_self_interaction,
            norm_factor=cfg.les_norm_factor, molecules=molecules or kgrid == (),
        )  # fmt: skip

    e, vjp = jax.vjp(energy, q)
    e = jnp.where(graph.graph_mask, e, 0.0)
    (phi,) = vjp(graph.graph_mask.astype(dtype))
    return {"latent_charges": q, "les_energy": e, "les_node_energy": 0.5 * q * phi}


def grow_kgrid(current: Sequence[int] | None, needed: Sequence[int]) -> tuple[int, int, int]:
    """Bucketed grid: ``current`` if it holds ``needed``, else the componentwise max with
    ``needed`` rounded up to even numbers (fewer recompiles as a cell grows)."""
    if current is not None and all(int(n) <= int(c) for n, c in zip(needed, current)):
        return tuple(int(c) for c in current)  # type: ignore[return-value]
    cur = tuple(current) if current is not None else (0, 0, 0)
    return tuple(max(int(c), int(n) + int(n) % 2) for c, n in zip(cur, needed))  # type: ignore


def batch_les_static(graph: Graph, dl: float, current=None) -> tuple[dict, tuple | None]:
    """Host-side static LES arguments of a concrete padded batch.

    Returns ``({"les_kgrid": ..., "les_molecules": ...}, grid to keep)``; logs (logger
    ``"tace_jax"``, INFO) when a cell outgrows ``current`` and the grid is reallocated.

    Raises:
        ValueError: a structure with mixed ``pbc`` (LES needs all or none), naming its index.
    """
    pbc = np.asarray(graph.pbc, bool).reshape(-1, 3)
    mask = np.asarray(graph.graph_mask, bool)
    mixed = mask & pbc.any(axis=1) & ~pbc.all(axis=1)
    if mixed.any():
        k = int(np.flatnonzero(mixed)[0])
        raise ValueError(
            f"LES: structure {k} of the batch has pbc={pbc[k].tolist()}; LES needs pbc all "
            "True (periodic) or all False (molecule)"
        )
    periodic = pbc.all(axis=1) & mask
    molecules = bool((mask & ~periodic).any())
    if not periodic.any():
        return {"les_kgrid": (), "les_molecules": True}, current
    needed = ewald_kgrid(np.asarray(graph.cell)[periodic], dl)
    grid = grow_kgrid(current, needed)
    if current is not None and grid != tuple(current):
        logger.info(
            "LES: a cell needs k-grid %s, larger than the compiled %s; reallocating to %s "
            "(recompiles)",
            needed,
            tuple(current),
            grid,
        )
    return {"les_kgrid": grid, "les_molecules": molecules}, grid


def dataset_les_static(structures, dl: float, headroom: float = 0.0, where: str = "data") -> dict:
    """Static LES module attributes for every batch drawn from ``structures`` (training).

    One k-grid holds every fully periodic structure (:func:`grow_kgrid` of the max needed grid,
    ``headroom`` as in :func:`tace_jax.ops.ewald_kgrid`); ``les_molecules`` is True when any
    structure is non-periodic. Under ``jit`` the grid cannot grow (docs/theory.md §4), so it is
    fixed here, on the host, before the step is compiled.

    Args:
        structures: iterable of objects with ``cell`` ``[3, 3]`` (or None) and ``pbc`` ``[3]``
            (or None), e.g. :class:`tace_jax.data.Structure`.
        dl: the LES grid resolution (Å).
        headroom: relative growth of the lattice vectors to allow.
        where: name of the data set for error messages.

    Returns:
        ``{"les_kgrid": tuple, "les_molecules": bool}`` for ``TACE.clone(**...)``.

    Raises:
        ValueError: a structure with mixed ``pbc``, naming its index and source.
    """
    cells, molecules = [], False
    for i, s in enumerate(structures):
        pbc = np.zeros(3, bool) if s.pbc is None else np.broadcast_to(np.asarray(s.pbc, bool), 3)
        if pbc.any() and not pbc.all():
            src = getattr(s, "source", None)
            raise ValueError(
                f"LES: {where} structure {i} (source {src}) has pbc={pbc.tolist()}; LES needs "
                "pbc all True (periodic) or all False (molecule)"
            )
        if pbc.all():
            cells.append(np.asarray(s.cell, np.float64).reshape(3, 3))
        else:
            molecules = True
    if not cells:
        return {"les_kgrid": (), "les_molecules": True}
    need = ewald_kgrid(np.stack(cells), dl, headroom=headroom)
    return {"les_kgrid": grow_kgrid(None, need), "les_molecules": molecules}


def check_kgrid_fits(cell, kgrid, dl: float, pbc=None, current_step: int | None = None) -> None:
    """Raise when ``cell`` (host value) needs more k-vectors than the static ``kgrid``.

    The jitted LES energy only sums the k-vectors of its static grid; a cell that outgrows it
    (NPT) would silently drop some. Call this on the host between jitted chunks; on failure
    rebuild with a grid from :func:`grow_kgrid` (``Potential.prepare_les``), which logs.

    Raises:
        RuntimeError: naming the needed and the compiled grid (and ``current_step``).
    """
    if kgrid == () or kgrid is None:
        return
    if not kgrid_fits(cell, kgrid, dl, pbc):
        need = ewald_kgrid(cell, dl, pbc)
        at = "" if current_step is None else f" at step {current_step}"
        raise RuntimeError(
            f"LES: the cell{at} needs k-grid {need}, larger than the static {tuple(kgrid)}; "
            "k-vectors would be dropped. Reallocate (grow_kgrid / Potential.prepare_les with "
            "more headroom) and recompile"
        )


def ensure_kgrid(cell, kgrid, dl: float, pbc=None, headroom: float = 0.0, need=None) -> tuple:
    """``kgrid`` if ``cell`` (host value, ``[3, 3]`` or ``[G, 3, 3]``) fits, else a regrown grid
    (:func:`grow_kgrid`, ``headroom`` as in :func:`tace_jax.ops.ewald_kgrid`) and an INFO log
    line (logger ``"tace_jax"``); the caller must then rebuild its jitted function. ``need``:
    a grid to hold as well (e.g. the largest one a jitted MD chunk met, docs/theory.md §4)."""
    need_cell = ewald_kgrid(cell, dl, pbc)
    if need is not None:
        need_cell = tuple(max(int(a), int(b)) for a, b in zip(need, need_cell))
    need = need_cell
    if kgrid and all(int(n) <= int(g) for n, g in zip(need, kgrid)):
        return tuple(int(g) for g in kgrid)
    held = ewald_kgrid(cell, dl, pbc, headroom=headroom)
    grid = grow_kgrid(kgrid or None, tuple(max(int(a), int(b)) for a, b in zip(need, held)))
    if kgrid and grid != tuple(kgrid):
        logger.info(
            "LES: a cell needs k-grid %s, larger than the compiled %s; reallocating to %s "
            "(recompiles)",
            need,
            tuple(kgrid),
            grid,
        )
    return grid


def les_born_charges(
    apply_fn: Callable[..., dict],
    variables,
    graph: Graph,
    epsilon_factor: float = 1.0,
    remove_mean: bool = True,
) -> jax.Array:
    """LES Born effective charges ``[N, 3, 3]`` of a padded batch (docs/theory.md §4).

    ``apply_fn(variables, graph)`` must return ``latent_charges [N]``; they are differentiated
    as a function of the positions (the neighbour list and the cell are kept fixed).
    """

    def charges(x):
        return apply_fn(variables, graph.replace(positions=x))["latent_charges"]

    return les_bec_graph(
        charges, graph.positions, graph.cell, graph.pbc, graph.node_graph, graph.node_mask,
        graph.num_graphs, epsilon_factor, remove_mean,
    )  # fmt: skip
