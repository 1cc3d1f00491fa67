"""Response properties under O(3) and padding (toy potential, float64).

B and the magnetic moments are rotated like ℰ, as ordinary (polar) vectors ``v·Rᵀ``, also for
improper elements: that is how the reference model treats them (they enter the polar rank-1
basis like the electric field), so M and the non-collinear magnetic forces rotate as vectors,
χ as ``R χ Rᵀ`` and the collinear magnetic forces are invariant. With a physical (axial) B the
check would hold for proper rotations only.
"""

from __future__ import annotations

import numpy as np
import pytest
from response_testutils import BUDGETS, as_numpy, props_fn

from tace_jax.testing import assert_equivariant

OUT_RANKS = {
    "energy": 0,
    "forces": 1,
    "virials": 2,
    "stress": 2,
    "atomic_virials": 2,
    "polarization": 1,
    "conservative_polarizability": 2,
    "born_effective_charges": 2,
    "magnetization": 1,
    "magnetic_susceptibility": 2,
    "collinear_magnetic_forces": 0,
    "noncollinear_magnetic_forces": 1,
}


def _inputs(rng, n):
    return {
        "electric_field": 0.4 * rng.normal(size=3),
        "magnetic_field": 0.4 * rng.normal(size=3),
        "initial_collinear_magmoms": rng.normal(size=n),
        "initial_noncollinear_magmoms": 0.5 * rng.normal(size=(n, 3)),
    }


def _set_inputs(graph, per_structure, junk_rng=None):
    """Fill ``graph.extras`` from one input dict per structure; padding rows 0 or junk."""
    g, n = graph.num_graphs, graph.num_nodes
    ng, nm = np.asarray(graph.node_graph), np.asarray(graph.node_mask)
    shapes = {
        "electric_field": (g, 3),
        "magnetic_field": (g, 3),
        "initial_collinear_magmoms": (n,),
        "initial_noncollinear_magmoms": (n, 3),
    }
    extras = {}
    for name, shape in shapes.items():
        x = np.zeros(shape) if junk_rng is None else junk_rng.normal(size=shape)
        for k, inp in enumerate(per_structure):
            if name.endswith("field"):
                x[k] = inp[name]
            else:
                x[(ng == k) & nm] = inp[name]
        extras[name] = x
    return graph.replace(extras=extras)


@pytest.mark.parametrize("system", ["si", "mol"])
def test_response_equivariance(system, toy_vars_direct, build, key, request, rng):
    atoms = request.getfixturevalue(system)
    graph = _set_inputs(build(atoms, budgets=BUDGETS), [_inputs(rng, len(atoms))])
    fn = props_fn()
    ex = graph.extras

    def model(positions, cell, e_field, b_field, m_col, m_nc):
        extras = {
            "electric_field": e_field,
            "magnetic_field": b_field,
            "initial_collinear_magmoms": m_col,
            "initial_noncollinear_magmoms": m_nc,
        }
        return fn(toy_vars_direct, graph.replace(positions=positions, cell=cell, extras=extras))

    names = ("electric_field", "magnetic_field")
    names += ("initial_collinear_magmoms", "initial_noncollinear_magmoms")
    inputs = (graph.positions, graph.cell, *(ex[k] for k in names))
    in_ranks = (1, 1, 1, 1, None, 1)
    err = assert_equivariant(model, key, inputs, in_ranks, OUT_RANKS, atol=1e-10, n_trials=3)
    print(f"\nO(3) max deviation ({system}): {err:.1e}")
    assert err < 1e-10
    out = as_numpy(model(*inputs))
    assert np.abs(out["collinear_magnetic_forces"]).max() > 1e-3


def test_padding_and_batching_change_nothing(toy_vars_direct, build, si, mol, rng):
    structures = (si, mol)
    inputs = [_inputs(rng, len(a)) for a in structures]
    fn = props_fn()
    single = [
        as_numpy(fn(toy_vars_direct, _set_inputs(build(a, budgets=BUDGETS), [inp])))
        for a, inp in zip(structures, inputs)
    ]
    small = _set_inputs(build(list(structures), budgets=BUDGETS), inputs)
    big = build(list(structures), budgets=(BUDGETS[0] + 64, BUDGETS[1] + 128, 5))
    big = _set_inputs(big, inputs, junk_rng=rng)  # junk in every padding row
    for graph in (small, big):
        out = as_numpy(fn(toy_vars_direct, graph))
        ng, nm = np.asarray(graph.node_graph), np.asarray(graph.node_mask)
        for k, ref in enumerate(single):
            n = len(structures[k])
            for name, v in out.items():
                if v.shape[0] == graph.num_graphs:
                    np.testing.assert_allclose(v[k], ref[name][0], atol=1e-12, err_msg=name)
                else:
                    np.testing.assert_allclose(
                        v[(ng == k) & nm], ref[name][:n], atol=1e-12, err_msg=name
                    )
        for name, v in out.items():
            pad = ~nm if v.shape[0] == graph.num_nodes else ~np.asarray(graph.graph_mask)
            assert np.abs(v[pad]).max() == 0.0, name
