"""``Potential``: a ready-to-use TACE model (config + statistics + variables + dtype).

It turns ``ase.Atoms`` into padded graphs, batches them, compiles one function per padded shape
and returns numpy results per structure::

    pot = Potential.from_reference("tace_default.npz", "tace_default.json", dtype="float64")
    res = pot.predict(atoms_list, properties=("energy", "forces", "stress"))
    pot.save("model.tace")  # one versioned file
    pot = Potential.load("model.tace", dtype="float32")

Padding budgets are rounded up to buckets (multiples of 8 nodes / 32 edges, then about 8 buckets
per doubling)
so that a stream of similar structures (MD, relaxations) reuses a few compiled shapes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.data.atoms_graph import atoms_to_graph_dict, collate
from tace_jax.data.graph import Graph, pad_graph, round_up, single_atom_graph
from tace_jax.properties import PROPERTY_NAMES, compute_properties, hessian

from .config import TACEConfig
from .statistics import Statistics
from .tace import TACE

__all__ = ["Potential", "PotentialFormatError", "FORMAT_VERSION", "bucket"]

#: Version of the file written by :meth:`Potential.save`.
FORMAT_VERSION = 1
_FORMAT = "tace_jax.Potential"
_GRAPH_KEYS = {"energy", "virials", "stress", "direct_dipole", "direct_polarizability"}
_GRAPH_KEYS |= {"direct_virials"}


class PotentialFormatError(ValueError):
    """A file is not a readable :class:`Potential` artefact (corrupt, wrong kind or version)."""


def bucket(n: int, multiple: int = 64, per_octave: int = 8) -> int:
    """Padding size for ``n`` items: a multiple of ``multiple``, then ``per_octave`` sizes per
    doubling (≤ 12.5 % waste with the default 8), so nearby sizes share a compiled shape."""
    m = round_up(max(int(n), 1), multiple)
    if m <= multiple * per_octave:
        return m
    step = max(multiple, 1 << (m.bit_length() - 1 - int(math.log2(per_octave))))
    return round_up(m, step)


def _as_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    if dt == np.float64 and not jax.config.jax_enable_x64:
        raise RuntimeError(
            "float64 needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) before "
            "creating or loading the Potential"
        )
    return dt


def _cast(variables, dtype: np.dtype):
    """Cast floating leaves to ``dtype`` (device arrays); other leaves stay as they are."""

    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, variables)


def _dummy_graph(config: TACEConfig) -> Graph:
    """One isolated atom of the first element (parameter shapes do not depend on the graph)."""
    return single_atom_graph(config.atomic_numbers[0])


class Potential:
    """A TACE model with fixed variables, ready for prediction.

    Attributes:
        config: :class:`TACEConfig`.
        statistics: :class:`Statistics`.
        variables: Flax variables (device arrays, floating leaves in ``dtype``).
        dtype: ``np.float32`` or ``np.float64`` (float64 needs ``jax_enable_x64``).
        model: the ``TACE`` Flax module.
        trace_count: how many times a prediction function was traced (compiles).
    """

    def __init__(
        self, config: TACEConfig, statistics: Statistics, variables, dtype="float32"
    ) -> None:
        self.config = config
        self.statistics = statistics
        self.dtype = _as_dtype(dtype)
        statistics.check_compatible(config.num_elements, config.num_levels)
        self.model = TACE(config, statistics)
        self.variables = _cast(variables, self.dtype)
        self.trace_count = 0
        self._fns: dict = {}

    # ------------------------------------------------------------------ construction / IO
    @classmethod
    def init(cls, config: TACEConfig, statistics: Statistics, key, dtype="float32") -> Potential:
        """A randomly initialised model."""
        dt = _as_dtype(dtype)
        model = TACE(config, statistics, param_dtype=dt)
        variables = jax.jit(model.init)(key, _dummy_graph(config))  # faster than eager
        return cls(config, statistics, variables, dtype=dt)

    @classmethod
    def from_reference(cls, weights_npz, config_json, dtype="float64") -> Potential:
        """Import a reference PyTorch TACE fixture (``npz`` weights + ``json`` config)."""
        from .reference import load_reference

        dt = _as_dtype(dtype)
        config, statistics, variables = load_reference(weights_npz, config_json)
        return cls(config, statistics, variables, dtype=dt)

    def save(self, path: str | os.PathLike) -> None:
        """Write one versioned file (msgpack): header, config, statistics and variables.

        The variables are stored in the potential's dtype with a SHA-256 checksum. The file is
        written to a temporary name and moved into place atomically.
        """
        from tace_jax import __version__

        blob = flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, self.variables))
        payload = {
            "format": _FORMAT,
            "format_version": FORMAT_VERSION,
            "tace_jax_version": __version__,
            "config": json.dumps(self.config.to_dict()),
            "statistics": json.dumps(self.statistics.to_dict()),
            "dtype": self.dtype.name,
            "variables_sha256": hashlib.sha256(blob).hexdigest(),
            "variables": blob,
        }
        data = flax.serialization.msgpack_serialize(payload)
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".tace")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike, dtype=None) -> Potential:
        """Read a file written by :meth:`save` (``dtype``: override the stored dtype).

        Raises:
            FileNotFoundError: no such file.
            PotentialFormatError: not a Potential file, corrupt, or an unknown format version.
        """
        path = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        try:
            payload = flax.serialization.msgpack_restore(data)
        except Exception as err:
            raise PotentialFormatError(
                f"{path}: not a readable tace_jax Potential file ({err})"
            ) from err
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise PotentialFormatError(f"{path}: not a tace_jax Potential file")
        version = payload.get("format_version")
        if version != FORMAT_VERSION:
            raise PotentialFormatError(
                f"{path}: format_version {version!r} is not supported (this tace_jax reads "
                f"version {FORMAT_VERSION}; written by tace_jax {payload.get('tace_jax_version')})"
            )
        try:
            blob = payload["variables"]
            if hashlib.sha256(blob).hexdigest() != payload["variables_sha256"]:
                raise PotentialFormatError(f"{path}: checksum mismatch, the variables are corrupt")
            variables = flax.serialization.msgpack_restore(blob)
            config = TACEConfig.from_dict(json.loads(payload["config"]))
            statistics = Statistics.from_dict(json.loads(payload["statistics"]))
            stored = payload["dtype"]
        except PotentialFormatError:
            raise
        except Exception as err:
            raise PotentialFormatError(f"{path}: corrupt Potential file ({err!r})") from err
        _check_tree(variables, config, statistics, path)
        return cls(config, statistics, variables, dtype=stored if dtype is None else dtype)

    # ----------------------------------------------------------------------- properties
    @property
    def cutoff(self) -> float:
        return self.config.cutoff

    @property
    def atomic_numbers(self) -> tuple[int, ...]:
        return self.config.atomic_numbers

    @property
    def num_params(self) -> int:
        return int(sum(np.size(x) for x in jax.tree.leaves(self.variables.get("params", {}))))

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Potential(elements={list(c.atomic_numbers)}, cutoff={c.cutoff}, "
            f"layers={c.num_layers}, channels={c.num_channel}, params={self.num_params}, "
            f"dtype={self.dtype.name})"
        )

    def astype(self, dtype) -> Potential:
        """A copy with variables and computations in ``dtype``."""
        return Potential(self.config, self.statistics, self.variables, dtype=dtype)

    # ------------------------------------------------------------------- graph helpers
    def apply(self, graph: Graph, edge_vecs=None) -> dict:
        """Raw model outputs for a padded graph (not jitted)."""
        return self.model.apply(self.variables, graph, edge_vecs=edge_vecs)

    def apply_fn(self, variables, graph: Graph, edge_vecs=None) -> dict:
        """``apply_fn(variables, graph, edge_vecs=None)`` for :func:`compute_properties`."""
        return self.model.apply(variables, graph, edge_vecs=edge_vecs)

    def energy_fn(self, graph: Graph):
        """``(positions [N,3], cell [G,3,3] | None) -> total energy`` of the real graphs.

        The neighbour list of ``graph`` is kept fixed; differentiable and jit-able.
        """

        def energy(positions, cell=None):
            g = graph.replace(positions=positions, cell=graph.cell if cell is None else cell)
            out = self.model.apply(self.variables, g)
            return jnp.sum(jnp.where(g.graph_mask, out["energy"], 0.0))

        return energy

    def graph_from_atoms(self, atoms_list, budgets=None, where: str = "structure") -> Graph:
        """A padded graph (budgets bucketed unless given) in the potential's dtype."""
        if not isinstance(atoms_list, (list, tuple)):
            atoms_list = [atoms_list]
        dicts = [self._graph_dict(a, f"{where} {k}") for k, a in enumerate(atoms_list)]
        return self._pad(collate(dicts), len(dicts), budgets)

    def _graph_dict(self, atoms, where: str) -> dict:
        return atoms_to_graph_dict(atoms, self.cutoff, self.atomic_numbers, where=where)

    def _pad(self, batch: dict, n_graphs: int, budgets=None) -> Graph:
        if budgets is None:
            budgets = (
                bucket(len(batch["positions"]) + 1, multiple=8),
                bucket(len(batch["senders"]) + 1, multiple=32),
                n_graphs + 1,
            )
        return pad_graph(batch, budgets, dtype=self.dtype)

    def compute(self, graph: Graph, properties: Sequence[str] = ("energy", "forces")) -> dict:
        """Jitted :func:`compute_properties` for a padded graph (compiled once per shape)."""
        return self._compiled(tuple(properties))(self.variables, graph)

    def _compiled(self, properties: tuple[str, ...]):
        if properties not in self._fns:

            def fn(variables, graph):
                self.trace_count += 1
                return compute_properties(self.apply_fn, variables, graph, properties)

            self._fns[properties] = jax.jit(fn)
        return self._fns[properties]

    # ----------------------------------------------------------------------- prediction
    def predict(
        self,
        atoms_list,
        properties: Sequence[str] = ("energy", "forces", "stress"),
        batch_size: int = 8,
    ):
        """Predict properties of one ``ase.Atoms`` or a list of them.

        Args:
            atoms_list: an ``ase.Atoms`` or a sequence of them.
            properties: among ``energy``, ``node_energy``, ``forces``, ``stress`` (eV/Å³, ASE
                sign; zeros for molecules), ``virials``, ``edge_forces``, ``atomic_virials``,
                ``atomic_stresses``, ``scalar_descriptor`` and configured ``direct_*`` heads
                (always returned).
            batch_size: structures evaluated together.

        Returns:
            For a list: one dict per structure (numpy arrays; ``energy`` a float; per-atom
            arrays ``[n, ...]``; ``stress``/``virials`` ``[3, 3]``; ``edge_forces [E, 3]`` with
            ``edge_senders``, ``edge_receivers``, ``edge_shifts`` naming the edges). For a single
            ``Atoms``: that dict.

        Raises:
            UnknownElementError, NeighborListError: bad input (naming the structure index).
        """
        single = not isinstance(atoms_list, (list, tuple))
        atoms_list = [atoms_list] if single else list(atoms_list)
        if isinstance(properties, str):
            properties = (properties,)
        properties = tuple(dict.fromkeys(("energy", *properties)))
        self._check_properties(properties)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results = []
        for start in range(0, len(atoms_list), batch_size):
            chunk = atoms_list[start : start + batch_size]
            dicts = [self._graph_dict(a, f"structure {start + k}") for k, a in enumerate(chunk)]
            graph = self._pad(collate(dicts), len(dicts))
            out = jax.tree.map(np.asarray, self.compute(graph, properties))
            results.extend(_split(out, dicts, graph, properties))
        return results[0] if single else results

    def _check_properties(self, properties: Sequence[str]) -> None:
        allowed = set(PROPERTY_NAMES) | {"scalar_descriptor"} | set(self.config.targets[1:])
        bad = [p for p in properties if p not in allowed]
        if bad:
            raise ValueError(f"unknown properties {bad}; available: {sorted(allowed)}")

    def jax_md(self, atoms, **kwargs):
        """jax-md ``(energy_fn, neighbor_fn, shift_fn)`` for ``atoms``; see
        :func:`tace_jax.md.jax_md.jax_md_functions` (keyword arguments are passed on)."""
        from tace_jax.md.jax_md import jax_md_functions

        return jax_md_functions(self, atoms, **kwargs)

    def hessian(self, atoms, chunk_size: int = 16) -> np.ndarray:
        """Hessian ``∂²E/∂x∂x`` of one structure, ``[n, 3, n, 3]`` in eV/Å² (numpy)."""
        d = self._graph_dict(atoms, "structure 0")
        graph = self._pad(collate([d]), 1)
        n = len(d["positions"])
        key = ("hessian", n, int(chunk_size))
        if key not in self._fns:

            def fn(variables, graph):
                self.trace_count += 1
                return hessian(self.apply_fn, variables, graph, chunk_size, num_atoms=n)

            self._fns[key] = jax.jit(fn)
        return np.asarray(self._fns[key](self.variables, graph))[:, :, :n, :]


def _split(out: dict, dicts: list[dict], graph: Graph, properties) -> list[dict]:
    """Cut batch outputs into per-structure numpy dicts."""
    n_nodes, n_edges, n_graphs = graph.budgets
    node_off = np.cumsum([0] + [len(d["positions"]) for d in dicts])
    edge_off = np.cumsum([0] + [len(d["senders"]) for d in dicts])
    res = []
    for k, d in enumerate(dicts):
        r: dict[str, Any] = {}
        for name, v in out.items():
            if name == "edge_forces":
                r[name] = v[edge_off[k] : edge_off[k + 1]]
                r["edge_senders"] = np.asarray(d["senders"])
                r["edge_receivers"] = np.asarray(d["receivers"])
                r["edge_shifts"] = np.asarray(d["shifts"])
            elif name in _GRAPH_KEYS or (v.shape[:1] == (n_graphs,) and v.shape[0] != n_nodes):
                r[name] = v[k]
            else:
                r[name] = v[node_off[k] : node_off[k + 1]]
        r["energy"] = float(r["energy"])
        res.append(r)
    return res


def _check_tree(variables, config: TACEConfig, statistics: Statistics, path: str) -> None:
    """Compare stored variables with the shapes the config implies."""
    model = TACE(config, statistics)
    template = jax.eval_shape(
        functools.partial(model.init, jax.random.key(0)), _dummy_graph(config)
    )
    flat_t = {
        jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(template)
    }
    flat_v = {
        jax.tree_util.keystr(p): np.shape(x)
        for p, x in jax.tree_util.tree_leaves_with_path(variables)
    }
    if flat_t != flat_v:
        missing = sorted(set(flat_t) - set(flat_v))[:5]
        extra = sorted(set(flat_v) - set(flat_t))[:5]
        shapes = [k for k in set(flat_t) & set(flat_v) if flat_t[k] != flat_v[k]][:5]
        raise PotentialFormatError(
            f"{path}: variables do not match the stored config (missing {missing}, unexpected "
            f"{extra}, wrong shape {shapes})"
        )
