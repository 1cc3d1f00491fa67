"""The TACE model (Cartesian ``TACEV1`` + ``WrapModelV1`` energy head; docs/theory.md §2).

``TACE(config, statistics).apply(variables, graph, edge_vecs=None)`` returns a dict:

* ``node_energy [N]``: ``E0 + σ(E_model + E_ZBL) + μ`` (0 on padding nodes);
* ``energy [G]``: per-graph sums (0 for padding graphs);
* ``scalar_descriptor [N, T·C]``: rank-0 node features after each layer;
* direct heads when configured: ``direct_forces [N, 3]``, ``direct_dipole [G, 3]``,
  ``direct_polarizability [G, 3, 3]``, ``direct_virials [G, 3, 3]`` with
  ``direct_stress [G, 3, 3]``;
* ``charges [N]`` when a charge head is configured (they sum to ``total_charge`` per graph);
* with ``config.les``: ``latent_charges [N]`` and ``les_energy [G]``; the LES energy is part of
  ``energy`` and, split as ``½ q_i φ_i``, of ``node_energy`` (:mod:`tace_jax.models.les`).

Inputs beyond geometry (``config.input_names``) come from ``graph.extras``: the universal
invariant embedding is added to ``h⁽⁰⁾`` and the rank-1 equivariant embeddings to the A-basis
of every layer (docs/theory.md §2.2, §2.5). A value outside its range (level, embedding index)
cannot raise under ``jit``: the input assembler rejects it (see
:mod:`tace_jax.models.model_inputs`).

The model depends on positions and cell only through the edge vectors (except the charge
dipole term of ``direct_dipole`` and the LES energy), and computes in the dtype of
``graph.positions``; parameters are stored in ``param_dtype`` and cast at use, so casting a whole
variables tree works too.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.data.graph import Graph, edge_vectors
from tace_jax.nn.embedding import NodeEmbedding
from tace_jax.nn.interaction import Interaction
from tace_jax.nn.product import Product
from tace_jax.nn.readout import ScalarReadout, TensorReadout
from tace_jax.nn.uee import UniversalEquivariantEmbedding
from tace_jax.nn.uie import UniversalInvariantEmbedding
from tace_jax.ops import (
    budgets_exceeded,
    cartesian_harmonics,
    element_layout,
    irreps_to_matrix,
    lagrangian_charges,
    radial_features,
    safe_normalize,
    uniform_charges,
    zbl_node_energy,
)
from tace_jax.properties import cell_volume

from .config import TACEConfig
from .les import les_outputs, resolve_kgrid
from .model_inputs import node_input, read_input
from .statistics import Statistics

__all__ = ["TACE", "DEBYE_PER_E_ANGSTROM"]

DEBYE_PER_E_ANGSTROM = 4.8032047


class TACE(nn.Module):
    """Cartesian TACE potential.

    Attributes:
        config: hyperparameters.
        statistics: E0/σ/μ tables and ``n̄``.
        param_dtype: storage dtype of newly initialised parameters.
        edge_chunk: edges per chunk in the interactions (``"auto"``: about 4 MiB of messages
            per chunk on CPU, no chunking on accelerators; ``None``: never chunk). It changes
            speed and memory only, never the result beyond rounding.
        les_kgrid: static LES k-grid ``(N_1, N_2, N_3)`` for the periodic structures of the
            batch, ``()`` when it has none; ``None``: from the concrete cell (eager calls only;
            under ``jit`` a periodic batch needs it). Any grid holding
            ``ewald_kgrid(cell, les_dl)`` gives the same energy.
        les_molecules: False skips the LES pair sum (the batch holds periodic cells only).
        element_budgets: static rows per element of the element-sorted product basis
            (:func:`tace_jax.ops.element_budgets` of the batch's species); ``None``: the
            select path, which evaluates every element's weights. Same result either way;
            budgets smaller than the batch's element counts give NaN energies.

    The model reads exactly the ``graph.extras`` inputs of ``config.input_names``
    (:mod:`tace_jax.models.model_inputs`).
    """

    config: TACEConfig
    statistics: Statistics
    param_dtype: Any = jnp.float32
    edge_chunk: int | str | None = "auto"
    les_kgrid: tuple[int, ...] | None = None
    les_molecules: bool = True
    element_budgets: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, graph: Graph, edge_vecs: jnp.ndarray | None = None) -> dict[str, Any]:
        cfg, st, pd = self.config, self.statistics, self.param_dtype
        st.check_compatible(cfg.num_elements, cfg.num_levels)
        dtype = graph.positions.dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"TACE: graph.positions must be floating point, got {dtype}")
        if edge_vecs is None:
            edge_vecs = edge_vectors(graph.positions, graph.cell, graph)
        edge_vecs = edge_vecs.astype(dtype)
        n_nodes, n_graphs = graph.num_nodes, graph.num_graphs
        senders, receivers = graph.senders, graph.receivers
        species = graph.species
        onehot = jax.nn.one_hot(species, cfg.num_elements, dtype=dtype)
        node_w = graph.node_mask.astype(dtype)
        edge_w = graph.edge_mask.astype(dtype)
        if cfg.num_levels > 1:
            level = node_input(graph, "level")
        else:
            level = jnp.zeros(n_nodes, jnp.int32)
        heads = cfg.num_levels if cfg.use_multi_head else 1
        layout = None
        if self.element_budgets is not None:
            budgets = tuple(int(b) for b in self.element_budgets)
            layout = (*element_layout(species, graph.node_mask, budgets), budgets)
        level_oh = jax.nn.one_hot(level, heads, dtype=dtype) if heads > 1 else None

        unit, r = safe_normalize(edge_vecs)
        y_cat = jnp.concatenate(cartesian_harmonics(unit, cfg.lmax_edge, normalize=False), -1)
        feats = radial_features(r, cfg.cutoff, cfg.num_radial_basis, cfg.polynomial_cutoff)

        h = {0: NodeEmbedding(cfg.num_channel, pd, name="node_embedding")(onehot)}
        u = None
        if cfg.invariant_embeddings:  # UIE (docs/theory.md §2.2)
            values = {e.name: node_input(graph, e.name, dtype) for e in cfg.invariant_embeddings}
            specs = tuple((e.name, e.num_embeddings) for e in cfg.invariant_embeddings)
            uie = UniversalInvariantEmbedding(cfg.num_channel, specs, pd, name="uie")
            u = uie(values, dtype)
            h[0] = h[0] + u[:, None, :]
        vectors = {e.name: node_input(graph, e.name, dtype) for e in cfg.equivariant_embeddings}
        e_model = jnp.zeros(n_nodes, dtype)
        direct: dict[str, jnp.ndarray] = {}
        descriptors = []
        last = cfg.num_layers - 1
        for t in range(cfg.num_layers):
            out_ranks = cfg.output_ranks(t)
            sc_ranks = out_ranks if (t >= 1 or cfg.num_layers == 1) else ()
            a_basis, sc = Interaction(
                input_ranks=cfg.input_ranks(t),
                lmax_edge=cfg.lmax_edge,
                num_channel=cfg.num_channel,
                num_channel_hidden=cfg.num_channel_hidden,
                radial_hidden=cfg.radial_hidden,
                avg_num_neighbors=st.avg_num_neighbors,
                num_elements=cfg.num_elements,
                sc_ranks=sc_ranks,
                bias=cfg.bias,
                l1l2=cfg.inter_l1l2,
                edge_chunk=self.edge_chunk,
                param_dtype=pd,
                name=f"interaction_{t}",
            )(h, feats, y_cat, senders, receivers, edge_w, onehot)
            for e in cfg.equivariant_embeddings:  # UEE (docs/theory.md §2.5), after the sc
                uee = UniversalEquivariantEmbedding(
                    features=cfg.num_channel_hidden,
                    num_elements=cfg.num_elements,
                    normalizer=e.normalizer,
                    gate=e.gate,
                    linear=e.linear,
                    param_dtype=pd,
                    name=f"uee_{t}_{e.name}",
                )
                a_basis = {**a_basis, 1: a_basis[1] + uee(vectors[e.name], onehot)}
            h = Product(
                lmax_edge=cfg.lmax_edge,
                correlation=cfg.correlation,
                output_ranks=out_ranks,
                num_channel=cfg.num_channel,
                num_channel_hidden=cfg.num_channel_hidden,
                num_elements=cfg.num_elements,
                bias=cfg.bias,
                out_bias=cfg.bias and t == last,
                l1l2=cfg.prod_l1l2,
                l3l1=cfg.prod_l3l1,
                param_dtype=pd,
                name=f"product_{t}",
            )(a_basis, onehot, layout)
            h = {l: x + sc[l] if l in sc else x for l, x in h.items()}
            descriptors.append(h[0][:, 0, :])
            if t not in cfg.readout_layers():
                continue
            hidden = cfg.readout_hidden if t == last else ()
            e_model = e_model + ScalarReadout(hidden, heads, pd, name=f"energy_readout_{t}")(
                h[0][:, 0, :], level_oh
            )
            for key, l in _head_parts(cfg):
                if l == 0:
                    mod = ScalarReadout(hidden, heads, pd, name=f"{key}_readout_0_{t}")
                    y = mod(h[0][:, 0, :], level_oh)
                else:
                    mod = TensorReadout(hidden, heads, pd, name=f"{key}_readout_{l}_{t}")
                    y = mod(h[l], level_oh)
                direct[f"{key}_{l}"] = direct.get(f"{key}_{l}", 0.0) + y

        # energy assembly (docs/theory.md §2.9)
        z_table = jnp.asarray(np.asarray(cfg.atomic_numbers), jnp.int32)
        numbers = z_table[species] * graph.node_mask.astype(jnp.int32)
        e_zbl = 0.0
        if cfg.zbl:
            e_zbl = zbl_node_energy(
                r, numbers, senders, receivers, graph.edge_mask, n_nodes, cfg.polynomial_cutoff
            )
        table = lambda x: jnp.asarray(np.asarray(x), dtype)[level, species]  # noqa: E731
        e0, scale, shift = table(st.atomic_energies), table(st.scale), table(st.shift)
        edges_per_graph = jax.ops.segment_sum(
            edge_w, graph.node_graph[receivers], num_segments=n_graphs
        )
        g = graph.node_graph
        isolated = (graph.n_node[g] == 1) & (edges_per_graph[g] == 0)
        scale = jnp.where(isolated, 0.0, scale)
        shift = jnp.where(isolated, 0.0, shift)
        node_energy = e0 + scale * (e_model + e_zbl) + shift
        if cfg.uie_readout:  # added after the scale (fixture README §10.3)
            node_energy = node_energy + ScalarReadout((), 1, pd, name="uie_readout")(u)
        node_energy = node_energy * node_w
        if layout is not None:  # budgets below the counts would drop atoms: NaN, not wrong
            bad = budgets_exceeded(species, graph.node_mask, layout[2])
            node_energy = jnp.where(bad, jnp.nan, node_energy)
        graph_w = graph.graph_mask.astype(dtype)
        energy = jax.ops.segment_sum(node_energy, g, num_segments=n_graphs) * graph_w
        heads = _direct_outputs(cfg, graph, direct, node_w, graph_w, dtype)
        if cfg.les:  # docs/theory.md §4: added before any derivative
            if cfg.les_charge_source == "latent":
                scale = 1.0 if cfg.les_output_scale is None else cfg.les_output_scale
                q = direct["les_0"] * scale
            else:
                q = heads["charges"]
            grid = resolve_kgrid(self.les_kgrid, graph, cfg.les_dl, self.is_initializing())
            les = les_outputs(cfg, graph, q, grid, self.les_molecules)
            energy = energy + les["les_energy"]
            node_energy = node_energy + les["les_node_energy"]
            heads.update(latent_charges=les["latent_charges"], les_energy=les["les_energy"])
        out = {
            "node_energy": node_energy,
            "energy": energy,
            "scalar_descriptor": jnp.concatenate(descriptors, axis=-1) * node_w[:, None],
        }
        out.update(heads)
        return out


def _head_parts(cfg: TACEConfig) -> list[tuple[str, int]]:
    """``(module key, rank)`` of every per-layer readout besides the energy."""
    parts = []
    for head in cfg.targets[1:]:
        key = head.removeprefix("direct_")
        parts += [(key, l) for l in ((1,) if key in ("forces", "dipole") else (0, 2))]
    if cfg.charge_head == "lagrangian":
        parts += [("charges_chi", 0), ("charges_eta", 0)]
    elif cfg.charge_head == "uniform_distribution":
        parts += [("charges", 0)]
    if cfg.les and cfg.les_charge_source == "latent":
        parts += [("les", 0)]  # latent charges: energy-readout architecture (docs/theory.md §4)
    return parts


def _direct_outputs(cfg, graph, direct, node_w, graph_w, dtype) -> dict[str, jnp.ndarray]:
    """Assemble the direct and charge heads (docs/theory.md §2.10)."""
    out = {}
    seg = lambda x: jax.ops.segment_sum(  # noqa: E731
        x * node_w.reshape(-1, *([1] * (x.ndim - 1))), graph.node_graph, graph.num_graphs
    )
    for head in cfg.targets[1:]:
        key = head.removeprefix("direct_")
        if head == "direct_forces":
            out[head] = direct[f"{key}_1"] * node_w[:, None]
        elif head == "direct_dipole":
            q = read_input(graph, "charges", dtype)
            ionic = DEBYE_PER_E_ANGSTROM * q[:, None] * graph.positions
            out[head] = seg(ionic + direct[f"{key}_1"]) * graph_w[:, None]
        else:  # rank-2 heads: (Σ a0) δ/√3 + Σ a2
            a0 = seg(direct[f"{key}_0"])
            a2 = seg(direct[f"{key}_2"])
            out[head] = irreps_to_matrix(a0, None, a2) * graph_w[:, None, None]
    if "direct_virials" in out:  # direct stress = −V/|det L|, zero for molecules
        vol, periodic = cell_volume(graph)
        s = -out["direct_virials"] / vol[:, None, None]
        out["direct_stress"] = jnp.where(periodic[:, None, None], s, 0.0)
    if cfg.charge_head is not None:
        total = read_input(graph, "total_charge", dtype)
        args = (total, graph.node_graph, graph.node_mask, graph.num_graphs)
        if cfg.charge_head == "lagrangian":
            q = lagrangian_charges(direct["charges_chi_0"], direct["charges_eta_0"], *args)
        else:
            q = uniform_charges(direct["charges_0"], *args)
        out["charges"] = q * node_w
    return out
