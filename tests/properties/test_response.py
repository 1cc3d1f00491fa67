"""Response properties of compute_properties on the toy potential: finite differences (float64),
the acoustic sum rule, routes, requesting single properties, bad input and double backprop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from response_testutils import (
    ALL,
    BUDGETS,
    as_numpy,
    central_fd,
    energy_fn,
    props_fn,
    with_extra,
    with_inputs,
)

from tace_jax.properties import (
    PROPERTY_NAMES,
    RESPONSE_INPUTS,
    RESPONSE_PROPERTIES,
    RESPONSE_SHAPES,
    compute_properties,
)
from tace_jax.testing import assert_no_recompile
from tace_jax.testing.toy import toy_apply

FD_ATOL = 1e-8


@pytest.mark.parametrize("direct", [False, True], ids=["edges_only", "direct_term"])
@pytest.mark.parametrize("system", ["si", "mol"])
def test_response_matches_finite_differences(system, direct, build, request):
    atoms = request.getfixturevalue(system)
    variables = request.getfixturevalue("toy_vars_direct" if direct else "toy_vars")
    graph = with_inputs(build(atoms, budgets=BUDGETS), seed=3)
    n = len(atoms)
    out = as_numpy(props_fn()(variables, graph))
    errs = {}

    def energy_along(name):
        return lambda x: energy_fn(variables, with_extra(graph, name, x))[0]

    def prop_along(name, prop):
        return lambda x: props_fn()(variables, with_extra(graph, name, x))[prop][0]

    ex = graph.extras
    # first derivatives of E
    fd = central_fd(energy_along("electric_field"), ex["electric_field"], 1)
    errs["polarization"] = np.abs(out["polarization"][:1] + fd).max()
    fd = central_fd(energy_along("magnetic_field"), ex["magnetic_field"], 1)
    errs["magnetization"] = np.abs(out["magnetization"][:1] + fd).max()
    fd = central_fd(energy_along("initial_collinear_magmoms"), ex["initial_collinear_magmoms"], n)
    errs["collinear_magnetic_forces"] = np.abs(out["collinear_magnetic_forces"][:n] + fd).max()
    m_nc = ex["initial_noncollinear_magmoms"]
    fd = central_fd(energy_along("initial_noncollinear_magmoms"), m_nc, n)
    errs["noncollinear_magnetic_forces"] = np.abs(
        out["noncollinear_magnetic_forces"][:n] + fd
    ).max()
    fd = central_fd(
        lambda x: energy_fn(variables, graph.replace(positions=x))[0], graph.positions, n
    )
    errs["forces"] = np.abs(out["forces"][:n] + fd).max()
    # second derivatives: α[a, b] = ∂P_a/∂ℰ_b, χ likewise, Z*[i, a, b] = ∂P_a/∂x_ib
    fd = central_fd(prop_along("electric_field", "polarization"), ex["electric_field"], 1)
    errs["conservative_polarizability"] = np.abs(
        out["conservative_polarizability"][0] - fd[0].T
    ).max()
    fd = central_fd(prop_along("magnetic_field", "magnetization"), ex["magnetic_field"], 1)
    errs["magnetic_susceptibility"] = np.abs(out["magnetic_susceptibility"][0] - fd[0].T).max()
    pol = lambda x: props_fn()(variables, graph.replace(positions=x))["polarization"][0]  # noqa: E731
    fd = central_fd(pol, graph.positions, n)  # [i, b, a]
    errs["born_effective_charges"] = np.abs(
        out["born_effective_charges"][:n] - np.swapaxes(fd, 1, 2)
    ).max()
    print(
        f"\nFD max |AD - FD| ({system}, direct={direct}):", {k: f"{v:.1e}" for k, v in errs.items()}
    )
    bad = {k: v for k, v in errs.items() if not v <= FD_ATOL}
    assert not bad, f"finite differences disagree: {bad}"
    # the responses are not trivially small, and α, χ are symmetric
    for k in RESPONSE_PROPERTIES:
        assert np.abs(out[k]).max() > 1e-3, k
    for k in ("conservative_polarizability", "magnetic_susceptibility"):
        np.testing.assert_allclose(out[k][0], out[k][0].T, atol=1e-12, err_msg=k)
    # acoustic sum rule (translation invariance), molecule and periodic cell
    asr = np.abs(out["born_effective_charges"].sum(0)).max()
    print(f"acoustic sum rule max |sum_i Z*_i| = {asr:.1e}")
    assert asr < 1e-12
    # padding rows are exactly zero
    for k in (
        "born_effective_charges",
        "collinear_magnetic_forces",
        "noncollinear_magnetic_forces",
    ):
        assert np.abs(out[k][n:]).max() == 0.0, k
    for k in ("polarization", "conservative_polarizability", "magnetization"):
        assert np.abs(out[k][1:]).max() == 0.0, k


def test_routes_agree(toy_vars_direct, build, si, mol):
    """method="positions" equals the edge route (incl. the direct position term)."""
    graph = with_inputs(build([si, mol], budgets=BUDGETS), seed=5)
    edges = as_numpy(props_fn()(toy_vars_direct, graph))
    shared = tuple(k for k in ALL if k != "atomic_virials")  # edge-level: edge route only
    pos = as_numpy(props_fn(shared, "positions")(toy_vars_direct, graph))
    for k in shared:
        np.testing.assert_allclose(pos[k], edges[k], atol=1e-11, err_msg=k)
    # atomic virials (with the direct term d_i ⊗ x_i) sum to the virials
    ng = np.asarray(graph.node_graph)
    for k in range(2):
        w = edges["atomic_virials"][ng == k].sum(0)
        np.testing.assert_allclose(w, edges["virials"][k], atol=1e-11)


def test_single_requests_and_no_recompile(toy_vars, build, si, mol):
    """Only α, only Z*, …: exactly that comes back, with the right shape and values; a second
    structure padded to the same budgets does not retrace."""
    graphs = [with_inputs(build(a, budgets=BUDGETS), seed=k) for k, a in enumerate((si, mol))]
    full = [as_numpy(props_fn()(toy_vars, g)) for g in graphs]
    for prop in ("conservative_polarizability", "born_effective_charges"):
        outs = assert_no_recompile(
            lambda v, g, prop=prop: compute_properties(toy_apply, v, g, (prop,)),
            *[(toy_vars, g) for g in graphs],
        )
        for out, ref, g in zip(outs, full, graphs):
            assert set(out) == {"energy", prop}
            per, trailing = RESPONSE_SHAPES[prop]
            lead = g.num_graphs if per == "graph" else g.num_nodes
            assert out[prop].shape == (lead, *trailing)
            np.testing.assert_allclose(np.asarray(out[prop]), ref[prop], atol=1e-12)
    # the others, one at a time: shapes only (traced, not run); each needs only its input
    for prop in ("magnetization", "magnetic_susceptibility", "collinear_magnetic_forces"):
        g = with_inputs(build(mol, budgets=BUDGETS), seed=1, names=(RESPONSE_INPUTS[prop],))
        out = jax.eval_shape(
            lambda v, g, prop=prop: compute_properties(toy_apply, v, g, (prop,)), toy_vars, g
        )
        per, trailing = RESPONSE_SHAPES[prop]
        lead = g.num_graphs if per == "graph" else g.num_nodes
        assert set(out) == {"energy", prop} and out[prop].shape == (lead, *trailing)


def test_names_are_exported():
    assert set(RESPONSE_PROPERTIES) <= set(PROPERTY_NAMES)
    assert set(RESPONSE_INPUTS) == set(RESPONSE_SHAPES) == set(RESPONSE_PROPERTIES)


def test_missing_or_bad_input_raises(toy_vars, build, mol):
    graph = build(mol, budgets=BUDGETS)
    for prop, name in RESPONSE_INPUTS.items():
        with pytest.raises(ValueError, match=rf"{prop}.*{name}"):
            compute_properties(toy_apply, toy_vars, graph, ("energy", prop))
    bad = graph.replace(extras={"electric_field": jnp.zeros((graph.num_graphs, 2))})
    with pytest.raises(ValueError, match=r"born_effective_charges.*electric_field.*shape"):
        compute_properties(toy_apply, toy_vars, bad, ("born_effective_charges",))
    bad = graph.replace(extras={"initial_collinear_magmoms": jnp.zeros(graph.num_nodes, int)})
    with pytest.raises(ValueError, match=r"initial_collinear_magmoms.*floating"):
        compute_properties(toy_apply, toy_vars, bad, ("collinear_magnetic_forces",))


@pytest.mark.slow
def test_double_backprop_matches_finite_differences(toy_vars_direct, build, mol):
    """jax.grad of a loss on P, α, Z*, M and χ w.r.t. the variables equals central FD."""
    graph = with_inputs(build(mol, budgets=BUDGETS), seed=2)
    props = (
        "polarization",
        "conservative_polarizability",
        "born_effective_charges",
        "magnetization",
        "magnetic_susceptibility",
    )

    def loss(variables):
        out = compute_properties(toy_apply, variables, graph, props, training=True)
        return sum(jnp.sum(out[p] ** 2) for p in props)

    loss = jax.jit(loss)
    grads = jax.jit(jax.grad(loss))(toy_vars_direct)
    rng = np.random.default_rng(0)
    direction = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), toy_vars_direct)
    direction["constants"] = jax.tree.map(jnp.zeros_like, toy_vars_direct["constants"])
    h = 1e-6
    plus = jax.tree.map(lambda x, d: x + h * d, toy_vars_direct, direction)
    minus = jax.tree.map(lambda x, d: x - h * d, toy_vars_direct, direction)
    fd = float((loss(plus) - loss(minus)) / (2 * h))
    ad = float(
        sum(jnp.sum(g * d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    )
    print(f"\ndouble backprop: AD {ad:.10e} FD {fd:.10e} rel {abs(ad - fd) / abs(fd):.1e}")
    np.testing.assert_allclose(ad, fd, rtol=1e-6)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
