"""Response properties of the real TACE model under O(3), and the acoustic sum rule.

A small random TACE model with every equivariant embedding (ℰ, B, non-collinear moments), a
collinear-moment UIE and the direct dipole head. Geometry, cell and all rank-1 inputs rotate
together; B and the moments are rotated as the reference treats them (polar vectors, fixture
README §10.4; ``tace_jax.data.fields`` documents that they are physically axial). Then P, the
direct dipole, M and the non-collinear magnetic forces rotate as vectors, α, χ and Z* as rank-2
tensors, and the energy and the collinear magnetic forces are invariant.
"""

from __future__ import annotations

import ase
import ase.build
import jax
import numpy as np
import pytest

from tace_jax.inference import Potential
from tace_jax.models import Statistics, TACEConfig
from tace_jax.testing import assert_equivariant

OUT = {
    "energy": 0,
    "forces": 1,
    "polarization": 1,
    "conservative_polarizability": 2,
    "born_effective_charges": 2,
    "direct_dipole": 1,
    "magnetization": 1,
    "magnetic_susceptibility": 2,
    "collinear_magnetic_forces": 0,
    "noncollinear_magnetic_forces": 1,
}
PROPS = tuple(k for k in OUT if k != "direct_dipole")


@pytest.fixture(scope="module")
def pot():
    cfg = TACEConfig(
        atomic_numbers=(1, 6, 8),
        cutoff=3.5,
        num_layers=2,
        correlation=2,
        num_channel=8,
        lmax_node=1,
        lmax_edge=2,
        radial_hidden=(8,),
        readout_hidden=(8,),
        zbl=False,
        targets=("energy", "direct_dipole"),
        invariant_embeddings=("initial_collinear_magmoms",),
        equivariant_embeddings=(
            "electric_field",
            {"name": "magnetic_field", "gate": "tanh", "linear": True},
            "initial_noncollinear_magmoms",
        ),
    )
    return Potential.init(cfg, Statistics.default(3), jax.random.key(11), dtype="float64")


def _atoms(rng, periodic):
    if periodic:
        atoms = ase.Atoms("CO2H2", cell=np.diag([3.1, 3.3, 3.6]) + 0.2, pbc=True)
        atoms.positions = rng.uniform(0, 3.0, size=(5, 3))
    else:
        atoms = ase.build.molecule("HCOOH")
        atoms.rattle(0.05, seed=1)
    n = len(atoms)
    atoms.info["electric_field"] = 0.3 * rng.normal(size=3)
    atoms.info["magnetic_field"] = 0.5 * rng.normal(size=3)
    atoms.arrays["initial_collinear_magmoms"] = rng.normal(size=n)
    atoms.arrays["initial_noncollinear_magmoms"] = 0.5 * rng.normal(size=(n, 3))
    atoms.arrays["charges"] = rng.normal(scale=0.3, size=n)
    return atoms


@pytest.mark.parametrize("periodic", [False, True], ids=["molecule", "cell"])
def test_tace_response_equivariance_and_sum_rule(pot, periodic, key, rng):
    graph = pot.graph_from_atoms(_atoms(rng, periodic))
    ex = graph.extras
    vec = ("electric_field", "magnetic_field", "initial_noncollinear_magmoms")

    def fn(positions, cell, e, b, m):
        g = graph.replace(
            positions=positions, cell=cell, extras={**ex, **dict(zip(vec, (e, b, m)))}
        )
        return pot.compute(g, PROPS)

    inputs = (graph.positions, graph.cell, *(ex[k] for k in vec))
    traces = pot.trace_count
    err = assert_equivariant(fn, key, inputs, (1, 1, 1, 1, 1), OUT, atol=1e-10, n_trials=2)
    assert err < 1e-10
    out = jax.tree.map(np.asarray, fn(*inputs))
    n = int(graph.node_mask.sum())
    zstar = out["born_effective_charges"][:n]
    assert np.abs(zstar).max() > 1e-4  # not trivially zero
    np.testing.assert_allclose(zstar.sum(0), 0.0, atol=1e-10)  # acoustic sum rule
    assert np.abs(out["collinear_magnetic_forces"][:n]).max() > 1e-5
    assert pot.trace_count - traces == 1  # rotated inputs reuse the one compiled function
