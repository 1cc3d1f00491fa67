"""``Potential``: a ready-to-use TACE model (config + statistics + variables + dtype).

The user-facing object. It owns the Flax module and the variables and delegates the work: file
I/O to :mod:`tace_jax.models.format`, batching, bucketing, compilation and output splitting to
:class:`~tace_jax.inference.predictor.Predictor`, jax-md glue to
:mod:`tace_jax.inference.jax_md`::

    pot = Potential.from_reference("tace_default.npz", "tace_default.json", dtype="float64")
    res = pot.predict(atoms_list, properties=("energy", "forces", "stress"))
    pot.save("model.tace")
    pot = Potential.load("model.tace", dtype="float32")
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.data.errors import DataError
from tace_jax.data.graph import Graph, single_atom_graph
from tace_jax.models.config import TACEConfig
from tace_jax.models.format import PotentialFormatError, read_model, write_model
from tace_jax.models.les import batch_les_static, grow_kgrid, les_born_charges
from tace_jax.models.reference import load_reference
from tace_jax.models.statistics import Statistics
from tace_jax.models.tace import TACE
from tace_jax.nn.product import DERIVED, derive_weights
from tace_jax.ops import cast_floats, element_budgets, ewald_kgrid
from tace_jax.properties import PROPERTY_NAMES

from .predictor import Predictor

__all__ = ["Potential", "PotentialFormatError", "as_compute_dtype"]

#: Edge-level properties that LES models do not offer (the LES energy is not a sum over edges).
LES_UNSUPPORTED = ("edge_forces", "atomic_virials", "atomic_stresses")


def as_compute_dtype(dtype) -> np.dtype:
    """``np.float32`` or ``np.float64``; float64 needs ``jax_enable_x64`` (clear error)."""
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    if dt == np.float64 and not jax.config.jax_enable_x64:
        raise RuntimeError(
            "float64 needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) before "
            "creating or loading the Potential"
        )
    return dt


class Potential:
    """A TACE model with fixed variables, ready for prediction.

    Attributes:
        config: :class:`~tace_jax.models.TACEConfig`.
        statistics: :class:`~tace_jax.models.Statistics`.
        variables: Flax variables (device arrays, floating leaves in ``dtype``).
        dtype: ``np.float32`` or ``np.float64`` (float64 needs ``jax_enable_x64``).
        model: the ``TACE`` Flax module.
        predictor: the :class:`Predictor` that does the batched work.
    """

    def __init__(
        self,
        config: TACEConfig,
        statistics: Statistics,
        variables,
        dtype="float32",
        element_sort: bool | str = "auto",
    ) -> None:
        if element_sort != "auto" and not isinstance(element_sort, bool):
            raise ValueError(f"element_sort must be 'auto', True or False, got {element_sort!r}")
        self.element_sort = element_sort
        self.config = config
        self.statistics = statistics
        self.dtype = as_compute_dtype(dtype)
        statistics.check_compatible(config.num_elements, config.num_levels)
        self.model = TACE(config, statistics)
        self.variables = cast_floats(variables, self.dtype)
        self.predictor = Predictor(
            self.apply_fn,
            config.cutoff,
            config.atomic_numbers,
            self.dtype,
            input_names=config.input_names,
            input_limits=config.input_limits,
            **{**self._les_hooks(), "static_args": self._static_args},
        )

    def _les_hooks(self) -> dict:
        """Predictor hooks of a LES model: the bucketed k-grid and the LES Born charges."""
        if not self.config.les:
            return {}
        self._les_kgrid = None  # grown by batch_les_static (docs/theory.md §4)
        bec = functools.partial(
            les_born_charges,
            epsilon_factor=self.config.les_epsilon_factor,
            remove_mean=self.config.les_remove_mean,
        )
        return {  # LES depends on the cell explicitly: differentiate positions and strain
            "static_args": self._les_static,
            "extra_properties": {"les_born_effective_charges": bec},
            "method": "positions",
        }

    def _static_args(self, graph: Graph) -> dict:
        """The per-batch static arguments: the LES k-grid and the element budgets."""
        static = self._les_static(graph) if self.config.les else {}
        budgets = self.element_budgets(graph)
        if budgets is not None:
            static["element_budgets"] = budgets
        return static

    def element_budgets(self, graph: Graph, force: bool = False) -> tuple[int, ...] | None:
        """Static rows per element of the element-sorted product basis for ``graph``
        (:func:`tace_jax.ops.element_budgets`), or ``None`` for the select path.

        ``element_sort``: ``True`` sorts every batch, ``"auto"`` (default) batches of one
        structure (calculators, MD: the composition, hence the compiled shape, stays fixed),
        ``False`` none. The result is the same; the sorted path is faster (its cost does not
        grow with the number of elements) but compiles once per bucketed composition.
        ``force``: sort whenever ``element_sort`` is not False.
        """
        if self.element_sort is False:
            return None
        if self.element_sort == "auto" and not force:
            if int(np.sum(np.asarray(graph.graph_mask))) != 1:
                return None
        return element_budgets(
            np.asarray(graph.species), np.asarray(graph.node_mask), self.config.num_elements
        )

    def composition_apply_fn(self, species):
        """:meth:`apply_fn` with the element budgets of a fixed composition bound (``species``:
        the species index of every atom), for jitted callers such as jax-md."""
        if self.element_sort is False:
            return self.apply_fn
        sp = np.asarray(species)
        budgets = element_budgets(sp, np.ones(sp.shape, bool), self.config.num_elements)
        return functools.partial(self.apply_fn, element_budgets=budgets)

    def _les_static(self, graph: Graph) -> dict:
        static, self._les_kgrid = batch_les_static(graph, self.config.les_dl, self._les_kgrid)
        return static

    def prepare_les(self, atoms, headroom: float = 0.1) -> dict:
        """Fix the LES static arguments that :meth:`apply_fn` uses when called without them
        (jitted callers such as jax-md): the k-grid of ``atoms``' cell with ``headroom`` for a
        growing cell (NPT), or none for a molecule. Returns them."""
        if not self.config.les:
            return {}
        periodic = bool(np.all(atoms.pbc))
        if periodic:
            need = ewald_kgrid(np.asarray(atoms.cell), self.config.les_dl, headroom=headroom)
            self._les_default = {"les_kgrid": grow_kgrid(None, need), "les_molecules": False}
        else:
            self._les_default = {"les_kgrid": (), "les_molecules": True}
        return dict(self._les_default)

    # ------------------------------------------------------------------ construction / IO
    @classmethod
    def init(cls, config: TACEConfig, statistics: Statistics, key, dtype="float32") -> Potential:
        """A randomly initialised model."""
        dt = as_compute_dtype(dtype)
        model = TACE(config, statistics, param_dtype=dt)
        graph = single_atom_graph(config.atomic_numbers[0], inputs=config.input_names)
        variables = jax.jit(model.init)(key, graph)  # faster than eager
        return cls(config, statistics, variables, dtype=dt)

    @classmethod
    def from_reference(cls, weights_npz, config_json, dtype="float64") -> Potential:
        """Import a reference PyTorch TACE fixture (``npz`` weights + ``json`` config)."""
        dt = as_compute_dtype(dtype)
        config, statistics, variables = load_reference(weights_npz, config_json)
        return cls(config, statistics, variables, dtype=dt)

    def save(self, path: str | os.PathLike) -> None:
        """Write one versioned, checksummed file, atomically (:mod:`tace_jax.models.format`)."""
        from tace_jax import __version__

        write_model(
            path, self.config, self.statistics, self.variables, self.dtype.name, __version__
        )

    @classmethod
    def load(cls, path: str | os.PathLike, dtype=None) -> Potential:
        """Read a file written by :meth:`save` (``dtype``: override the stored dtype).

        ``path`` may also be a training output directory holding ``model``.

        Raises:
            FileNotFoundError: no such file.
            PotentialFormatError: not a model file, corrupt, an unknown format version, or a
                directory without a model in it.
        """
        path = os.fspath(path)
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "model")):
            path = os.path.join(path, "model")
        config, statistics, variables, stored = read_model(path)
        return cls(config, statistics, variables, dtype=stored if dtype is None else dtype)

    # ----------------------------------------------------------------------- properties
    @property
    def cutoff(self) -> float:
        return self.config.cutoff

    @property
    def atomic_numbers(self) -> tuple[int, ...]:
        return self.config.atomic_numbers

    @property
    def input_names(self) -> tuple[str, ...]:
        """Model inputs read from ``atoms.info``/``atoms.arrays`` or keywords."""
        return self.predictor.input_names

    @property
    def input_limits(self) -> dict[str, int]:
        """Exclusive upper bounds of the integer inputs (``level``, embedding tables)."""
        return self.predictor.input_limits

    @property
    def trace_count(self) -> int:
        """How many times a prediction function was traced (compiles)."""
        return self.predictor.trace_count

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
        return Potential(
            self.config, self.statistics, self.variables, dtype=dtype,
            element_sort=self.element_sort,
        )  # fmt: skip

    def inference_variables(self):
        """``variables`` plus the inference weights derived from them (the merged product-basis
        weights, :func:`tace_jax.nn.product.derive_weights`): the same outputs without the
        per-call weight merges. Recomputed whenever a leaf of ``variables`` is replaced (the
        dict itself or any array in it); for prediction only (the derived weights carry no
        gradient w.r.t. the parameters)."""
        if not self.variables.get("params"):
            return self.variables  # nothing to derive from
        leaves = jax.tree.leaves(self.variables)  # kept: their ids cannot be reused
        seen = getattr(self, "_derived_from", ())
        if len(seen) != len(leaves) or any(a is not b for a, b in zip(seen, leaves)):
            c = self.config
            graph = single_atom_graph(c.atomic_numbers[0], self.dtype, inputs=c.input_names)
            model = self.model
            if c.les:
                model = model.clone(**batch_les_static(graph, c.les_dl)[0])
            self._derived = jax.jit(functools.partial(derive_weights, model))(self.variables, graph)
            self._derived_from = leaves
        return {**self.variables, DERIVED: self._derived} if self._derived else self.variables

    # ------------------------------------------------------------------- graph helpers
    def apply(self, graph: Graph, edge_vecs=None) -> dict:
        """Raw model outputs for a padded graph (not jitted)."""
        return self.model.apply(self.variables, graph, edge_vecs=edge_vecs)

    def apply_fn(self, variables, graph: Graph, edge_vecs=None, **static) -> dict:
        """``apply_fn(variables, graph, edge_vecs=None)`` for :func:`compute_properties`
        (``static``: module attributes such as ``les_kgrid``, bound per batch)."""
        if self.config.les and "les_kgrid" not in static:
            static = {**getattr(self, "_les_default", {}), **static}
        model = self.model.clone(**static) if static else self.model
        return model.apply(variables, graph, edge_vecs=edge_vecs)

    def energy_fn(self, graph: Graph):
        """``(positions [N,3], cell [G,3,3] | None) -> total energy`` of the real graphs.

        The neighbour list and the inputs of ``graph`` are kept fixed; differentiable and
        jit-able.
        """

        model = self.model
        if self.config.les:  # grid of the initial cell with 10 % headroom (NPT)
            static, _ = batch_les_static(graph, self.config.les_dl / 1.1)
            model = model.clone(**static)
        budgets = self.element_budgets(graph, force=True)  # the composition is fixed
        if budgets is not None:
            model = model.clone(element_budgets=budgets)

        def energy(positions, cell=None):
            g = graph.replace(positions=positions, cell=graph.cell if cell is None else cell)
            out = model.apply(self.variables, g)
            return jnp.sum(jnp.where(g.graph_mask, out["energy"], 0.0))

        return energy

    def graph_from_atoms(self, atoms_list, budgets=None, where: str = "structure", **inputs):
        """A padded graph (budgets bucketed unless given) in the potential's dtype, with the
        model inputs from ``atoms.info``/``atoms.arrays`` and ``inputs``."""
        return self.predictor.graph(atoms_list, budgets, where, **inputs)

    def compute(self, graph: Graph, properties: Sequence[str] = ("energy", "forces")) -> dict:
        """Jitted :func:`compute_properties` for a padded graph (compiled once per shape)."""
        return self.predictor.compute(self.inference_variables(), graph, properties)

    # ----------------------------------------------------------------------- prediction
    def available_properties(self) -> tuple[str, ...]:
        """Every property name :meth:`predict` accepts for this model."""
        heads = [t for t in self.config_heads() if t != "energy"]
        names = PROPERTY_NAMES
        if self.config.les:  # no per-edge split of the reciprocal-space term
            heads += ["les_energy", "les_born_effective_charges"]
            names = tuple(p for p in names if p not in LES_UNSUPPORTED)
        return tuple(dict.fromkeys((*names, "scalar_descriptor", *heads)))

    def config_heads(self) -> tuple[str, ...]:
        """The model's own outputs: ``energy``, direct heads and predicted ``charges``."""
        heads = list(self.config.targets)
        if self.config.charge_head:
            heads.append("charges")
        if self.config.les:
            heads.append("latent_charges")
        return tuple(heads)

    def predict(
        self,
        atoms_list,
        properties: Sequence[str] = ("energy", "forces", "stress"),
        batch_size: int = 8,
        level_key: str = "level",
        **inputs,
    ):
        """Predict properties of one ``ase.Atoms`` or a list of them.

        A multi-fidelity model (docs/theory.md §2.8–2.9) predicts each structure at its level:
        ``level=`` (one integer for all, or one per structure), else
        ``atoms.info[level_key]``. A model with one level accepts only level 0.

        Args:
            atoms_list: an ``ase.Atoms`` or a sequence of them.
            properties: among ``energy``, ``node_energy``, ``forces``, ``stress`` (eV/Å³, ASE
                sign; zeros for molecules), ``virials``, ``edge_forces``, ``atomic_virials``,
                ``atomic_stresses``, ``scalar_descriptor``, the response properties
                (``polarization``, ``conservative_polarizability``,
                ``born_effective_charges``, ``magnetization``, ``magnetic_susceptibility``,
                ``collinear_magnetic_forces``, ``noncollinear_magnetic_forces``), the
                model's own heads (``direct_*``, ``charges``, ``latent_charges``), which are
                always returned, and for LES models ``les_energy`` and
                ``les_born_effective_charges [n, 3, 3]`` (no edge-level properties).
            batch_size: structures evaluated together.
            level_key: the ``atoms.info`` key holding each structure's fidelity level.
            **inputs: model inputs (``electric_field=``, ``level=``, ``charges=`` …) that
                override ``atoms.info``/``atoms.arrays`` for every structure.

        Returns:
            For a list: one dict per structure (numpy arrays; ``energy`` a float; per-atom
            arrays ``[n, ...]``; per-structure tensors without the batch axis;
            ``edge_forces [E, 3]`` with ``edge_senders``, ``edge_receivers``, ``edge_shifts``
            naming the edges). For a single ``Atoms``: that dict.

        Raises:
            DataError: bad input (unknown element, overlapping atoms, a missing, malformed or
                out-of-range model input), naming the structure index and the field.
            TypeError: a keyword that is not a model input.
        """
        single = not isinstance(atoms_list, (list, tuple))
        atoms_list = [atoms_list] if single else list(atoms_list)
        atoms_list, inputs = self._with_levels(atoms_list, inputs, level_key)
        if isinstance(properties, str):
            properties = (properties,)
        always = [h for h in self.config_heads() if not h.startswith("direct_")]
        properties = tuple(dict.fromkeys((*always, *properties)))
        allowed = self.available_properties()
        bad = [p for p in properties if p not in allowed]
        if bad:
            raise ValueError(f"unknown properties {bad}; available: {sorted(allowed)}")
        if self.statistics.e0_span is not None and not getattr(self, "_e0_warned", False):
            levels = [inputs.get("level", a.info.get("level", 0)) for a in atoms_list]
            numbers = [a.get_atomic_numbers() for a in atoms_list]
            note = self.statistics.e0_span_warning(numbers, self.atomic_numbers, levels)
            if note is not None:
                self._e0_warned = True  # once per Potential
                warnings.warn(note, stacklevel=2)
        results = self.predictor.predict(
            self.inference_variables(), atoms_list, properties, batch_size, inputs
        )
        return results[0] if single else results

    def _with_levels(self, atoms_list: list, inputs: dict, level_key: str):
        """``(atoms_list, inputs)`` with each structure's level in ``atoms.info["level"]``
        (copies where it changes) and checked against a single-level model.

        Raises:
            DataError: a level other than 0 for a model with one level.
            ValueError: ``level=`` a sequence of the wrong length.
        """
        inputs = dict(inputs)
        given = inputs.get("level")
        per = None
        if given is not None and np.ndim(given) == 1 and len(atoms_list) != 1:
            if len(given) != len(atoms_list):
                raise ValueError(
                    f"level=: {len(given)} values for {len(atoms_list)} structures "
                    "(give one level, or one per structure)"
                )
            per = list(given)
            del inputs["level"]
        elif given is None and level_key != "level":
            per = [a.info.get(level_key) for a in atoms_list]
        if per is not None:
            atoms_list = [_set_level(a, v) for a, v in zip(atoms_list, per)]
        if "level" not in self.input_names:  # one level: nothing reads it, so check here
            for k, a in enumerate(atoms_list):
                v = given if given is not None and per is None else a.info.get("level")
                if v is not None and np.size(v) == 1 and float(np.asarray(v).item()) != 0:
                    raise DataError(
                        f"structure {k}: input 'level' = {np.asarray(v).item()} is outside "
                        "[0, 1) for this model (it has a single fidelity level)"
                    )
            inputs.pop("level", None)  # level 0 of a single-level model: nothing to pass
        return atoms_list, inputs

    def jax_md(self, atoms, **kwargs):
        """jax-md ``(energy_fn, neighbor_fn, shift_fn)`` for ``atoms`` at fixed model inputs
        (``electric_field=``, ``level=`` …); see :func:`tace_jax.inference.jax_md.md_system`.
        A LES model fixes its k-grid from ``atoms`` first (:meth:`prepare_les`)."""
        self.prepare_les(atoms)
        from .jax_md import md_system  # lazy: importing jax-md starts the JAX backend

        return md_system(self, atoms, **kwargs)

    def hessian(self, atoms, chunk_size: int = 16, **inputs) -> np.ndarray:
        """Hessian ``∂²E/∂x∂x`` of one structure, ``[n, 3, n, 3]`` in eV/Å² (numpy)."""
        return self.predictor.hessian(self.inference_variables(), atoms, chunk_size, inputs)


def _set_level(atoms, level):
    """``atoms`` with ``info["level"] = level`` (a copy; ``atoms`` itself when unchanged)."""
    if level is None or atoms.info.get("level") is level:
        return atoms
    out = atoms.copy()
    out.info["level"] = level
    return out
