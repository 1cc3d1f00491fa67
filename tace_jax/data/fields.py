"""The one registry of model inputs and training labels (docs/theory.md §2.2, §2.5, §3).

Every per-structure quantity that enters a :class:`~tace_jax.data.graph.Graph` is declared here
once: its name (the reference's ``atoms.info`` / ``atoms.arrays`` key), whether it is per node or
per graph, its trailing shape, dtype kind, default and whether it is an axial (pseudo) vector.
Padding, batching, the input assembler and the calculator all read this table instead of
repeating the rule.

Model inputs (``Graph.extras``):

=============================  =====  =====  =====  ==================  ======
name                           per    shape  kind   default             axial
=============================  =====  =====  =====  ==================  ======
level                          graph  ()     int    required (see note)
spin_on                        graph  ()     int    required
spin_multiplicity              graph  ()     int    required
total_charge                   graph  ()     float  0 e
temperature                    graph  ()     float  required (K)
electron_temperature           graph  ()     float  required (K)
electric_field                 graph  (3,)   float  0 V/Å               no
magnetic_field                 graph  (3,)   float  0 T                 yes
charges                        node   ()     float  required (e)
initial_collinear_magmoms      node   ()     float  required (μ_B)
initial_noncollinear_magmoms   node   (3,)   float  required (μ_B)      yes
=============================  =====  =====  =====  ==================  ======

Note: ``level`` has no physical default; a model with a single level and no level embedding
never reads it. The reference model adds the magnetic field and the non-collinear moments to
the polar rank-1 features like the electric field, so that model is equivariant under proper
rotations only when they are present (inversion would flip an axial vector's parity).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "FieldSpec",
    "INPUTS",
    "LABEL_FIELDS",
    "FIELDS",
    "NODE_FIELDS",
    "GRAPH_FIELDS",
    "field_spec",
]


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One declared per-structure quantity.

    Attributes:
        name: key in ``Graph.extras``/``Graph.targets`` and in ``atoms.info``/``atoms.arrays``.
        per: ``"graph"`` or ``"node"``.
        shape: trailing shape of one item (``()`` for scalars, ``(3,)`` for vectors).
        kind: ``"float"``, ``"int"`` or ``"bool"``.
        default: value used when absent (``None``: required when the model uses it).
        axial: an axial (pseudo) vector: under an improper rotation it gains ``det R``.
        unit: physical unit (documentation).
    """

    name: str
    per: str
    shape: tuple[int, ...] = ()
    kind: str = "float"
    default: float | int | None = None
    axial: bool = False
    unit: str = ""

    @property
    def per_node(self) -> bool:
        return self.per == "node"

    @property
    def np_dtype(self):
        return {"int": np.int32, "bool": np.bool_}.get(self.kind, np.float64)


def _specs(*specs: FieldSpec) -> dict[str, FieldSpec]:
    return {s.name: s for s in specs}


#: Model inputs, in the reference's key names.
INPUTS: dict[str, FieldSpec] = _specs(
    FieldSpec("level", "graph", (), "int"),
    FieldSpec("spin_on", "graph", (), "int"),
    FieldSpec("spin_multiplicity", "graph", (), "int"),
    FieldSpec("total_charge", "graph", (), "float", 0.0, unit="e"),
    FieldSpec("temperature", "graph", (), "float", unit="K"),
    FieldSpec("electron_temperature", "graph", (), "float", unit="K"),
    FieldSpec("electric_field", "graph", (3,), "float", 0.0, unit="V/Å"),
    FieldSpec("magnetic_field", "graph", (3,), "float", 0.0, axial=True, unit="T"),
    FieldSpec("charges", "node", (), "float", unit="e"),
    FieldSpec("initial_collinear_magmoms", "node", (), "float", unit="μ_B"),
    FieldSpec("initial_noncollinear_magmoms", "node", (3,), "float", axial=True, unit="μ_B"),
)

#: Training labels (``Graph.targets``); ``has_<name>`` masks are per graph.
LABEL_FIELDS: dict[str, FieldSpec] = _specs(
    FieldSpec("energy", "graph", (), unit="eV"),
    FieldSpec("forces", "node", (3,), unit="eV/Å"),
    FieldSpec("stress", "graph", (3, 3), unit="eV/Å³"),
    FieldSpec("virials", "graph", (3, 3), unit="eV"),
    FieldSpec("dipole", "graph", (3,), unit="e·Å"),
    FieldSpec("polarizability", "graph", (3, 3), unit="e·Å²/V"),
    FieldSpec("born_charges", "node", (3, 3), unit="e"),
    FieldSpec("polarization", "graph", (3,), unit="e·Å"),
    # per node [N, 3, N, 3]: block diagonal over the batch's graphs (the middle N is the batch's
    # node count, written 0 here); see tace_jax.data.batch
    FieldSpec("hessian", "node", (3, 0, 3), unit="eV/Å²"),
)

_BOOKKEEPING = _specs(
    FieldSpec("weight", "graph"),
    FieldSpec("node_weight", "node"),
    FieldSpec("initial_magmoms", "node"),
)

#: Everything a padded batch may carry, with ``has_<label>`` masks.
FIELDS: dict[str, FieldSpec] = {
    **INPUTS,
    **LABEL_FIELDS,
    **_BOOKKEEPING,
    **{f"has_{n}": FieldSpec(f"has_{n}", "graph", (), "bool") for n in (*LABEL_FIELDS, *INPUTS)},
}

NODE_FIELDS = frozenset(n for n, s in FIELDS.items() if s.per_node)
GRAPH_FIELDS = frozenset(n for n, s in FIELDS.items() if not s.per_node)


def field_spec(name: str) -> FieldSpec:
    """The :class:`FieldSpec` of ``name`` (``KeyError`` naming the known fields otherwise)."""
    try:
        return FIELDS[name]
    except KeyError:
        raise KeyError(f"unknown field {name!r}; known: {sorted(FIELDS)}") from None
