"""Small structures, model inputs and the toy potential shared by the property tests."""

from __future__ import annotations

import ase
import ase.build
import jax
import numpy as np
import pytest

from tace_jax.data import graph_from_atoms
from tace_jax.testing.toy import toy_apply, toy_init

ATOMIC_NUMBERS = (1, 6, 8, 14)
CUTOFF = 4.0


def make_si(seed: int = 0, rattle: float = 0.1) -> ase.Atoms:
    """Diamond Si (8 atoms, cubic 5.43 Å, sheared a little so the cell is triclinic)."""
    atoms = ase.build.bulk("Si", "diamond", a=5.43, cubic=True)
    cell = atoms.cell.array.copy()
    cell[1, 0] += 0.3
    cell[2, 1] -= 0.2
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


def make_molecule(seed: int = 0) -> ase.Atoms:
    """Formic acid, rattled."""
    atoms = ase.build.molecule("HCOOH")
    atoms.rattle(0.05, seed=seed)
    return atoms


def build(atoms, budgets=None, dtype=np.float64):
    return graph_from_atoms(atoms, CUTOFF, ATOMIC_NUMBERS, budgets=budgets, dtype=dtype)


@pytest.fixture(scope="module")
def toy_vars():
    return toy_init(jax.random.key(7), len(ATOMIC_NUMBERS), cutoff=CUTOFF)


@pytest.fixture(scope="module")
def toy_vars_direct():
    """Toy variables with the direct position term ``−(q_z − q̄) x_i·ℰ``."""
    return toy_init(jax.random.key(11), len(ATOMIC_NUMBERS), cutoff=CUTOFF, direct_charges=True)


@pytest.fixture(scope="module")
def apply_fn():
    return toy_apply


@pytest.fixture
def si():
    return make_si()


@pytest.fixture
def mol():
    return make_molecule()


@pytest.fixture(name="build")
def _build():
    return build
