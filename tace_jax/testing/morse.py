"""A small analytic potential with the potential protocol (test double).

:class:`MorsePotential` is a smooth many-body (Morse pair + embedding) energy written against the
same ``apply_fn(variables, graph, edge_vecs=None)`` / :class:`~tace_jax.data.Graph` interface as
the TACE model and satisfying :class:`~tace_jax.inference.protocol.PotentialProtocol`. It tests the
dynamics, calculator and vibration code independently of the network. With ``charges`` it also
reads one model input, ``graph.extras["electric_field"]`` (``[G, 3]``, V/Å), and adds the
energy of fixed point charges in that field, ``−Σ_i q_i ℰ·x_i`` (eV), so the force on atom
``i`` gains ``q_i ℰ``. That term uses absolute positions: meant for molecules (in a periodic
cell it jumps when an atom is wrapped).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.data.atoms_graph import graph_from_atoms
from tace_jax.data.graph import Graph, edge_vectors

__all__ = ["MorsePotential", "morse_apply"]


def _cutoff_fn(r, rc):
    """C² polynomial cutoff: 1 at 0, 0 (with two zero derivatives) at ``rc``."""
    x = jnp.clip(r / rc, 0.0, 1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x**2)


def morse_apply(variables: dict, graph: Graph, edge_vecs=None) -> dict:
    """Morse pair energy plus an embedding term ``−a·sqrt(1 + ρ_i)`` (plus ``−q_i ℰ·x_i`` when
    ``variables["params"]`` holds per-element charges ``"charge"``).

    Args:
        variables: ``{"params": {"depth", "alpha", "r0", "embed", "e0"[, "charge"]},
            "constants": {"cutoff"}}`` (pair tables ``[M, M]``, per-element ``[M]``).
        graph: padded batch (with ``extras["electric_field"]`` ``[G, 3]`` for the charged
            variant).
        edge_vecs: optional ``[E, 3]`` edge vectors.

    Returns:
        ``{"node_energy": [N], "energy": [G]}``.
    """
    p = variables["params"]
    rc = variables["constants"]["cutoff"]
    if edge_vecs is None:
        edge_vecs = edge_vectors(graph.positions, graph.cell, graph)
    si, sj = graph.species[graph.receivers], graph.species[graph.senders]
    r2 = jnp.sum(edge_vecs**2, axis=-1)
    r = jnp.sqrt(jnp.where(graph.edge_mask, r2, 1.0))
    fc = jnp.where(graph.edge_mask, _cutoff_fn(r, rc), 0.0)
    e = jnp.exp(-p["alpha"][si, sj] * (r - p["r0"][si, sj]))
    pair = p["depth"][si, sj] * (e * e - 2.0 * e) * fc
    n, g = graph.num_nodes, graph.num_graphs
    rho = jax.ops.segment_sum(jnp.exp(-r) * fc, graph.receivers, num_segments=n)
    s = graph.species
    node = (
        p["e0"][s]
        + 0.5 * jax.ops.segment_sum(pair, graph.receivers, num_segments=n)
        - p["embed"][s] * jnp.sqrt(1.0 + rho)
    )
    if "charge" in p:
        field = graph.extras["electric_field"][graph.node_graph]
        node = node - p["charge"][s] * jnp.sum(field * graph.positions, axis=-1)
    node = jnp.where(graph.node_mask, node, 0.0)
    energy = jax.ops.segment_sum(node, graph.node_graph, num_segments=g)
    return {"node_energy": node, "energy": jnp.where(graph.graph_mask, energy, 0.0)}


class MorsePotential:
    """A stand-in for the trained ``Potential`` (same attributes and methods).

    Args:
        atomic_numbers: elements of the model.
        cutoff: Å.
        dtype: ``"float32"`` or ``"float64"``.
        depth, r0, alpha: Morse parameters (scalars or ``[M, M]``), eV, Å, 1/Å.
        embed: embedding strength (eV), scalar or ``[M]``.
        charges: ``None`` (geometry only), or fixed charges per element (e, scalar or ``[M]``):
            the model then reads the ``electric_field`` input.
    """

    def __init__(
        self,
        atomic_numbers=(1, 6, 8),
        cutoff: float = 5.0,
        dtype: str = "float32",
        depth=0.5,
        r0=1.2,
        alpha=1.6,
        embed=0.3,
        charges=None,
    ):
        self.atomic_numbers = tuple(sorted(int(z) for z in atomic_numbers))
        self.cutoff = float(cutoff)
        self.dtype = str(np.dtype(dtype))
        m = len(self.atomic_numbers)
        full = lambda v: np.broadcast_to(np.asarray(v, np.float64), (m, m)).copy()
        vec = lambda v: np.broadcast_to(np.asarray(v, np.float64), (m,)).copy()
        params = {
            "depth": full(depth),
            "alpha": full(alpha),
            "r0": full(r0),
            "embed": vec(embed),
            "e0": np.zeros(m),
        }
        if charges is not None:
            params["charge"] = vec(charges)
        self.input_names = ("electric_field",) if charges is not None else ()
        self.variables = jax.tree_util.tree_map(
            lambda x: jnp.asarray(x, self.dtype),
            {"params": params, "constants": {"cutoff": np.asarray(self.cutoff)}},
        )
        self.apply_fn = morse_apply

    def astype(self, dtype) -> MorsePotential:
        """The same potential computing in ``dtype``."""
        new = object.__new__(MorsePotential)
        new.__dict__.update(self.__dict__)
        new._fns = {}
        new.dtype = str(np.dtype(dtype))
        new.variables = jax.tree_util.tree_map(lambda x: x.astype(new.dtype), self.variables)
        return new

    def graph(self, atoms, electric_field=None) -> Graph:
        """The padded graph of ``atoms`` (with the field from the argument, else
        ``atoms.info["electric_field"]``, else 0, for the charged variant)."""
        g = graph_from_atoms(atoms, self.cutoff, self.atomic_numbers, dtype=np.dtype(self.dtype))
        if not self.input_names:
            return g
        if electric_field is None:
            electric_field = atoms.info.get("electric_field", np.zeros(3))
        field = np.zeros((g.num_graphs, 3))
        field[0] = np.asarray(electric_field, np.float64).reshape(3)
        return g.replace(extras={"electric_field": jnp.asarray(field, self.dtype)})

    def predict(self, atoms, properties=("energy", "forces", "stress"), **inputs) -> dict:
        """``{"energy": float, "forces": [N,3], "stress": [3,3]}`` (numpy)."""
        g = self.graph(atoms, **inputs)
        out = self._jitted(("predict", tuple(properties)))(self.variables, g)
        n = len(atoms)
        res = {"energy": float(out["energy"][0])}
        if "forces" in out:
            res["forces"] = np.asarray(out["forces"][:n])
        if "stress" in out:
            res["stress"] = np.asarray(out["stress"][0])
        if "node_energy" in out:
            res["node_energy"] = np.asarray(out["node_energy"][:n])
        return res

    def hessian(self, atoms, **inputs) -> np.ndarray:
        """``[N, 3, N, 3]`` eV/Å²."""
        n = len(atoms)
        h = self._jitted(("hessian", n))(self.variables, self.graph(atoms, **inputs))
        return np.asarray(h)[:, :, :n, :]

    def _jitted(self, key):
        from tace_jax.properties import compute_properties, hessian

        cache = self.__dict__.setdefault("_fns", {})
        if key not in cache:
            if key[0] == "predict":
                fn = lambda v, g: compute_properties(self.apply_fn, v, g, key[1])  # noqa: E731
            else:
                fn = lambda v, g: hessian(self.apply_fn, v, g, num_atoms=key[1])  # noqa: E731
            cache[key] = jax.jit(fn)
        return cache[key]

    def jax_md(self, atoms, **kwargs):
        """jax-md functions of ``atoms`` (:func:`tace_jax.md.md_system`)."""
        from tace_jax.md import md_system

        return md_system(self, atoms, **kwargs)
