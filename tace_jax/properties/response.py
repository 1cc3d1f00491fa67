"""Response properties: names, the model inputs they need, and their assembly from derivatives.

All of them come from the one energy E (docs/theory.md §3; arXiv 2509.14961), with
ℰ = ``graph.extras["electric_field"]`` ``[G, 3]``, B = ``graph.extras["magnetic_field"]``
``[G, 3]`` and the moments m = ``graph.extras["initial_collinear_magmoms"]`` ``[N]`` or
``graph.extras["initial_noncollinear_magmoms"]`` ``[N, 3]``:

========================================  ===========  =========================================
name                                      shape        definition
========================================  ===========  =========================================
``polarization``                          ``[G, 3]``   P = −∂E/∂ℰ
``conservative_polarizability``           ``[G,3,3]``  α[g, a, b] = ∂P_a/∂ℰ_b
``born_effective_charges``                ``[N,3,3]``  Z*[i, a, b] = ∂P_a/∂x_ib (= ∂F_ib/∂ℰ_a)
``magnetization``                         ``[G, 3]``   M = −∂E/∂B
``magnetic_susceptibility``               ``[G,3,3]``  χ[g, a, b] = ∂M_a/∂B_b
``collinear_magnetic_forces``             ``[N]``      −∂E/∂m_i
``noncollinear_magnetic_forces``          ``[N, 3]``   −∂E/∂m_ia
========================================  ===========  =========================================

First derivatives come out of the single reverse pass that also gives forces and virials;
second derivatives (α, Z*, χ) are forward-over-reverse: JVPs of that reverse pass along the
three field directions (one tangent ``[G, 3]`` per direction for all graphs at once; graphs do
not interact), mapped with ``vmap``. The ℰ-JVPs give α and Z* from the same linearisation.
Only what is asked for is computed: α alone needs no position derivatives, Z* alone no
``∂E/∂ℰ``. Z* includes any direct dependence of the energy on positions (not only through edge
vectors), so ``Σ_i Z*_i = 0`` exactly when the energy is translation invariant.

Every property needs its input in ``graph.extras`` (zeros for no field): a missing or
malformed input raises ``ValueError`` naming the property and the input. A model that does not
read the input returns zeros.

Symmetry. The properties are whatever the energy makes them: for the reference TACE the
magnetic field and the moments enter the polar rank-1 basis like ℰ (docs/theory.md §2.5), so
the model is O(3) equivariant with B and m rotated as ordinary vectors (also under inversion),
and M, χ and the magnetic forces then transform as polar tensors. With a physical, axial B
only proper rotations are symmetries of such a model.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp

from tace_jax.data.graph import Graph

__all__ = [
    "RESPONSE_PROPERTIES",
    "RESPONSE_INPUTS",
    "RESPONSE_SHAPES",
    "response_plan",
    "reverse_names",
    "field_directions",
    "response_outputs",
]

#: Response property names (see the module docstring).
RESPONSE_PROPERTIES = (
    "polarization",
    "conservative_polarizability",
    "born_effective_charges",
    "magnetization",
    "magnetic_susceptibility",
    "collinear_magnetic_forces",
    "noncollinear_magnetic_forces",
)
#: The ``graph.extras`` input each response property differentiates with respect to.
RESPONSE_INPUTS = {
    "polarization": "electric_field",
    "conservative_polarizability": "electric_field",
    "born_effective_charges": "electric_field",
    "magnetization": "magnetic_field",
    "magnetic_susceptibility": "magnetic_field",
    "collinear_magnetic_forces": "initial_collinear_magmoms",
    "noncollinear_magnetic_forces": "initial_noncollinear_magmoms",
}
#: ``(per, trailing shape)`` of each response property: ``per`` is ``"graph"`` or ``"node"``.
RESPONSE_SHAPES = {
    "polarization": ("graph", (3,)),
    "conservative_polarizability": ("graph", (3, 3)),
    "born_effective_charges": ("node", (3, 3)),
    "magnetization": ("graph", (3,)),
    "magnetic_susceptibility": ("graph", (3, 3)),
    "collinear_magnetic_forces": ("node", ()),
    "noncollinear_magnetic_forces": ("node", (3,)),
}
_INPUT_SHAPES = {
    "electric_field": ("graph", (3,)),
    "magnetic_field": ("graph", (3,)),
    "initial_collinear_magmoms": ("node", ()),
    "initial_noncollinear_magmoms": ("node", (3,)),
}
# property -> (input differentiated in the reverse pass or None, input of the JVP or None)
_PLAN = {
    "polarization": ("electric_field", None),
    "conservative_polarizability": ("electric_field", "electric_field"),
    "born_effective_charges": (None, "electric_field"),
    "magnetization": ("magnetic_field", None),
    "magnetic_susceptibility": ("magnetic_field", "magnetic_field"),
    "collinear_magnetic_forces": ("initial_collinear_magmoms", None),
    "noncollinear_magnetic_forces": ("initial_noncollinear_magmoms", None),
}


def _checked_input(graph: Graph, prop: str, name: str) -> jax.Array:
    extras = graph.extras or {}
    if name not in extras:
        raise ValueError(
            f"property {prop!r} needs the input {name!r} in graph.extras, which has "
            f"{sorted(extras)}; give {name} for every structure (zeros for no field)"
        )
    x = jnp.asarray(extras[name])
    per, trailing = _INPUT_SHAPES[name]
    lead = graph.num_graphs if per == "graph" else graph.num_nodes
    if x.shape != (lead, *trailing):
        raise ValueError(
            f"property {prop!r}: graph.extras[{name!r}] must have shape {(lead, *trailing)} "
            f"(one row per {per}), got {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"property {prop!r}: graph.extras[{name!r}] must be floating point, got {x.dtype}"
        )
    return x


def response_plan(properties: Iterable[str], graph: Graph) -> tuple[dict, tuple[str, ...]]:
    """What to differentiate for the requested response properties.

    Returns:
        ``(inputs, tangent)``: ``inputs`` maps every needed ``graph.extras`` name to its
        (checked) array; ``tangent`` lists, sorted, the inputs along whose three directions the
        reverse pass is linearised (``electric_field`` for α and Z*, ``magnetic_field`` for χ).
        :func:`reverse_names` gives the inputs whose first derivative is needed.

    Raises:
        ValueError: a needed input is missing, or has the wrong shape or dtype (naming the
            property and the input).
    """
    inputs, tangent = {}, []
    for prop in properties:
        if prop not in _PLAN:
            continue
        rev, tan = _PLAN[prop]
        for name in (rev, tan):
            if name is not None and name not in inputs:
                inputs[name] = _checked_input(graph, prop, name)
        if tan is not None and tan not in tangent:
            tangent.append(tan)
    return inputs, tuple(sorted(tangent))


def reverse_names(properties: Iterable[str]) -> tuple[str, ...]:
    """Inputs whose first derivative the requested properties need (sorted)."""
    return tuple(sorted({_PLAN[p][0] for p in properties if p in _PLAN} - {None}))


def field_directions(fields: dict, names: tuple[str, ...]) -> dict:
    """Stacked JVP tangents: for each name (in order) and axis ``a``, that field's unit vector
    ``e_a`` in every graph and zeros elsewhere; each leaf is ``[3·len(names), G, 3]``."""
    out = {}
    for k, name in enumerate(names):
        x = fields[name]
        eye = jnp.eye(3, dtype=x.dtype)
        blocks = [jnp.zeros((3, *x.shape), x.dtype)] * len(names)
        blocks[k] = jnp.broadcast_to(eye[:, None, :], (3, *x.shape))
        out[name] = jnp.concatenate(blocks, axis=0)
    return out


def response_outputs(
    graph: Graph,
    need: set,
    d_inputs: dict,
    tangent_names: tuple[str, ...],
    d_inputs_dot: dict | None,
    forces_dot: jax.Array | None,
) -> dict:
    """Assemble the requested response properties from derivatives.

    Args:
        graph: the padded batch (masks).
        need: requested property names.
        d_inputs: ``∂E/∂input`` from the reverse pass.
        tangent_names: the JVP inputs, in the order of :func:`field_directions`.
        d_inputs_dot: JVPs of ``d_inputs``, each leaf ``[3·len(tangent_names), ...]``.
        forces_dot: JVPs of the forces, ``[3·len(tangent_names), N, 3]`` (for Z*).
    """
    gm, nm = graph.graph_mask, graph.node_mask
    res = {}

    def rows(name):  # the three JVP directions of input ``name``
        k = tangent_names.index(name)
        return slice(3 * k, 3 * k + 3)

    if "polarization" in need:
        res["polarization"] = jnp.where(gm[:, None], -d_inputs["electric_field"], 0.0)
    if "magnetization" in need:
        res["magnetization"] = jnp.where(gm[:, None], -d_inputs["magnetic_field"], 0.0)
    if "conservative_polarizability" in need:
        t = d_inputs_dot["electric_field"][rows("electric_field")]  # [b, G, a] = −∂²E/…
        res["conservative_polarizability"] = jnp.where(
            gm[:, None, None], -jnp.transpose(t, (1, 2, 0)), 0.0
        )
    if "magnetic_susceptibility" in need:
        t = d_inputs_dot["magnetic_field"][rows("magnetic_field")]
        res["magnetic_susceptibility"] = jnp.where(
            gm[:, None, None], -jnp.transpose(t, (1, 2, 0)), 0.0
        )
    if "born_effective_charges" in need:
        t = forces_dot[rows("electric_field")]  # [a, N, b] = ∂F_ib/∂ℰ_a
        res["born_effective_charges"] = jnp.where(
            nm[:, None, None], jnp.transpose(t, (1, 0, 2)), 0.0
        )
    if "collinear_magnetic_forces" in need:
        res["collinear_magnetic_forces"] = jnp.where(
            nm, -d_inputs["initial_collinear_magmoms"], 0.0
        )
    if "noncollinear_magnetic_forces" in need:
        res["noncollinear_magnetic_forces"] = jnp.where(
            nm[:, None], -d_inputs["initial_noncollinear_magmoms"], 0.0
        )
    return res
