"""jax-md energy functions and neighbour lists against the exact (vesin) prediction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from tace_jax.inference.md_neighbors import make_neighbor_fns, perpendicular_widths
from tace_jax.md import ImageNeighborList, md_system, stress_fn
from tace_jax.testing import MorsePotential


@pytest.fixture(scope="module")
def pot():
    return MorsePotential(atomic_numbers=(1, 6, 8, 14), cutoff=4.0, dtype="float64")


def _compare(pot, atoms, expect, **kw):
    s = md_system(pot, atoms, **kw)
    nbrs = s.neighbor_fn.allocate(s.positions)
    assert type(nbrs).__name__ == expect
    e, g = jax.jit(jax.value_and_grad(s.energy_fn))(s.positions, nbrs)
    ref = pot.predict(atoms)
    np.testing.assert_allclose(e, ref["energy"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(-g, ref["forces"], rtol=0, atol=1e-10)
    assert np.abs(ref["forces"]).max() > 1e-2  # the check is not vacuous
    if atoms.pbc.all():
        box = s.box
        st = jax.jit(lambda r, nb, b: stress_fn(s.energy_fn, r, nb, b))(s.positions, nbrs, box)
        np.testing.assert_allclose(st, ref["stress"], rtol=0, atol=1e-10)


def _si(cubic=True, rattle=0.1, seed=2):
    a = bulk("Si", "diamond", 5.43, cubic=cubic)
    a.rattle(rattle, seed=seed)
    return a


def test_molecule_free_space(pot):
    m = molecule("CH3CH2OH")
    m.rattle(0.05, seed=1)
    _compare(pot, m, "NeighborList")


def test_large_periodic_uses_jax_md(pot):
    a = _si().repeat((3, 2, 2))  # widths 16.3, 10.9, 10.9 > 2·(4 + 0.5)
    _compare(pot, a, "NeighborList")


@pytest.mark.parametrize("backend", ["auto", "image"])
def test_small_cell_images(pot, backend):
    # 5.43 Å < 2·cutoff: atoms see several images of each other and of themselves
    _compare(pot, _si(), "ImageNeighborList", backend=backend)


def test_triclinic_small_and_fractional(pot):
    a = _si(cubic=False, rattle=0.05, seed=3)  # primitive fcc cell, widths 3.1 Å
    a.cell[2] += [0.7, 0.2, 0.0]
    assert float(perpendicular_widths(a.cell.array).min()) < 4.0
    _compare(pot, a, "ImageNeighborList")
    _compare(pot, _si(), "ImageNeighborList", fractional_coordinates=True)


def test_mixed_pbc_slab(pot):
    a = _si().repeat((1, 1, 2))
    a.pbc = [True, True, False]
    a.center(vacuum=5.0, axis=2)
    _compare(pot, a, "ImageNeighborList")


def test_jax_md_backend_refuses_small_cells(pot):
    with pytest.raises(ValueError, match="2·\\(cutoff \\+ skin\\)"):
        md_system(pot, _si(), backend="jax_md")


def test_image_list_survives_wrapping(pot):
    """Moving an atom by a lattice vector (as a wrapping integrator does) keeps the energy."""
    a = _si()
    s = md_system(pot, a)
    nbrs = s.neighbor_fn.allocate(s.positions)
    e0 = s.energy_fn(s.positions, nbrs)
    R = s.positions.at[3].add(jnp.asarray(a.cell[0] - a.cell[2]))
    nb = s.neighbor_fn.update(R, nbrs)
    assert not bool(nb.did_buffer_overflow)
    np.testing.assert_allclose(s.energy_fn(R, nb), e0, atol=1e-10)


@pytest.mark.parametrize("big", [False, True])
def test_compression_flags_overflow(pot, big):
    """Compressing the system beyond the allocated capacity sets did_buffer_overflow."""
    a = _si(rattle=0.0).repeat((3, 3, 3) if big else (1, 1, 1))
    s = md_system(pot, a, capacity_multiplier=1.0)
    nbrs = s.neighbor_fn.allocate(s.positions)
    assert not bool(jnp.any(nbrs.did_buffer_overflow != 0))
    update = jax.jit(s.neighbor_fn.update)
    nb = update(s.positions * 0.9, nbrs)  # positions only: more pairs inside the radius
    assert bool(jnp.any(jnp.asarray(nb.did_buffer_overflow) != 0))


def test_box_shrinking_below_limit_flags_overflow(pot):
    a = _si(rattle=0.0).repeat((2, 2, 2))  # widths 10.86 > 9: jax-md list
    fns = make_neighbor_fns(a.cell.array, a.pbc, 4.0, skin=0.5, fractional_coordinates=True)
    frac = jnp.asarray(a.get_scaled_positions())
    nbrs = fns.allocate(frac)
    assert not isinstance(nbrs, ImageNeighborList)
    box = jnp.asarray(a.cell.array.T) * 0.8
    nb = fns.update(frac, nbrs, box=box)
    assert bool(jnp.any(jnp.asarray(nb.did_buffer_overflow) != 0))
    assert isinstance(fns.allocate(frac, box=box), ImageNeighborList)  # reallocation switches


def test_unknown_element_is_reported(pot):
    with pytest.raises(ValueError, match="not in the model"):
        md_system(pot, Atoms("HeH", positions=[[0, 0, 0], [0, 0, 1]]))
