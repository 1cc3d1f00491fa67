"""``TACEConfig``: the frozen, validated hyperparameters of a TACE model (docs/theory.md §5.1).

Defaults are the reference ``cart_tacev1.yaml`` (v0.1.0): 2 layers, correlation 3, 48 channels,
``L_n = 2``, ``L_e = 3``, 8 ``j0`` radial functions with a ``p = 5`` polynomial envelope, radial MLP
``[64, 64, 64]`` (SiLU, no bias), last readout hidden width 16, all-layer readouts and ZBL on.
The compute dtype is not part of the config: the model computes in the dtype of its inputs.

Optional inputs beyond geometry (docs/theory.md §2.2, §2.5, §2.10) are configured by
``invariant_embeddings`` (:class:`InvariantEmbedding`), ``equivariant_embeddings``
(:class:`EquivariantEmbedding`), ``uie_readout`` and ``charge_head``; the model reads them from
``graph.extras`` under the names of :attr:`TACEConfig.input_names`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from tace_jax.nn.uee import UEE_GATES, UEE_PROPERTIES
from tace_jax.nn.uie import FLOAT_UIE, INTEGER_UIE
from tace_jax.ops import CHARGE_HEADS as _CHARGE_HEADS
from tace_jax.ops import L1L2_OPTIONS
from tace_jax.ops.latent_ewald import NORM_FACTOR

__all__ = [
    "TACEConfig",
    "MODEL_HEADS",
    "L1L2_OPTIONS",
    "DIRECT_HEAD_RANKS",
    "InvariantEmbedding",
    "EquivariantEmbedding",
    "CHARGE_HEADS",
    "LES_CHARGE_SOURCES",
]

MODEL_HEADS = (
    "energy",
    "direct_forces",
    "direct_dipole",
    "direct_polarizability",
    "direct_virials",
)
# ranks each head reads from the last layer (docs/theory.md §2.7)
DIRECT_HEAD_RANKS = {
    "energy": (0,),
    "direct_forces": (1,),
    "direct_dipole": (1,),
    "direct_polarizability": (0, 2),
    "direct_virials": (0, 2),
}
_ACTS = ("silu",)
CHARGE_HEADS = (None, *_CHARGE_HEADS)
LES_CHARGE_SOURCES = ("latent", "lagrangian")


def _err(field: str, msg: str) -> ValueError:
    return ValueError(f"TACEConfig.{field}: {msg}")


@dataclasses.dataclass(frozen=True)
class InvariantEmbedding:
    """One universal invariant embedding (UIE, docs/theory.md §2.2).

    Attributes:
        name: the input: ``"level"``, ``"spin_on"``, ``"spin_multiplicity"`` (integer, a table
            of ``num_embeddings`` rows indexed by the value) or ``"charges"``,
            ``"initial_collinear_magmoms"`` (per atom), ``"total_charge"``, ``"temperature"``,
            ``"electron_temperature"`` (per graph; float, a two-layer MLP).
        num_embeddings: table size (integer inputs only; ``None`` for float inputs). Values
            must lie in ``[0, num_embeddings)``; the input assembler checks it (inside the
            jitted model an out-of-range value embeds as zeros).
        act: activation of the float MLP (``"silu"``).
    """

    name: str
    num_embeddings: int | None = None
    act: str = "silu"

    def __post_init__(self):
        field = f"invariant_embeddings[{self.name!r}]"
        if self.name in INTEGER_UIE:
            n = self.num_embeddings
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise _err(field, f"integer input needs num_embeddings >= 1, got {n!r}")
        elif self.name in FLOAT_UIE:
            if self.num_embeddings is not None:
                raise _err(field, f"num_embeddings is only for integer inputs {INTEGER_UIE}")
        else:
            raise _err(
                "invariant_embeddings",
                f"unknown input {self.name!r}; options: {INTEGER_UIE + FLOAT_UIE}",
            )
        if self.act not in _ACTS:
            raise _err(field, f"act must be one of {_ACTS}, got {self.act!r}")


@dataclasses.dataclass(frozen=True)
class EquivariantEmbedding:
    """One universal equivariant (rank-1) embedding (UEE, docs/theory.md §2.5).

    Attributes:
        name: ``"electric_field"``, ``"magnetic_field"`` (per graph) or
            ``"initial_noncollinear_magmoms"`` (per atom). All are embedded as polar vectors,
            as in the reference (so B and the moments break inversion symmetry).
        normalizer: scale ``s`` applied to the input.
        gate: ``None`` or a norm gate ``"silu"``, ``"tanh"``, ``"jilu"``.
        linear: a ``Linear_1`` after the gate.
    """

    name: str
    normalizer: float = 1.0
    gate: str | None = None
    linear: bool = False

    def __post_init__(self):
        object.__setattr__(self, "normalizer", float(self.normalizer))
        object.__setattr__(self, "linear", bool(self.linear))
        field = f"equivariant_embeddings[{self.name!r}]"
        if self.name not in UEE_PROPERTIES:
            raise _err(
                "equivariant_embeddings",
                f"unknown input {self.name!r}; options: {UEE_PROPERTIES}",
            )
        if self.gate not in UEE_GATES:
            raise _err(field, f"gate must be one of {UEE_GATES}, got {self.gate!r}")
        if not (self.normalizer == self.normalizer and abs(self.normalizer) < float("inf")):
            raise _err(field, f"normalizer must be finite, got {self.normalizer}")


def _specs(value: Any, cls, field: str) -> tuple:
    """Coerce ``value`` into a tuple of ``cls`` specs.

    Accepts a reference-style mapping ``{name: {options, "enable": bool}}`` (disabled entries
    dropped), or a sequence of specs, names, ``{"name": ..., **options}`` dicts or
    ``(name, options)`` pairs.
    """
    if isinstance(value, Mapping):
        items = [
            (k, {o: x for o, x in (v or {}).items() if o != "enable"})
            for k, v in value.items()
            if (v or {}).get("enable", True)
        ]
    elif isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _err(field, f"must be a sequence of embeddings, got {value!r}")
    else:
        items = list(value)
    names = {f.name for f in dataclasses.fields(cls)}
    out = []
    for it in items:
        if isinstance(it, cls):
            out.append(it)
            continue
        if isinstance(it, str):
            name, opts = it, {}
        elif isinstance(it, Mapping):
            opts = dict(it)
            name = opts.pop("name", None)
        elif isinstance(it, (tuple, list)) and len(it) == 2 and isinstance(it[1], Mapping):
            name, opts = it[0], dict(it[1])
        else:
            raise _err(field, f"cannot read embedding {it!r}")
        unknown = sorted(set(opts) - names)
        if unknown:
            raise _err(field, f"unknown options {unknown} for {name!r}")
        out.append(cls(name=name, **opts))
    dup = sorted({s.name for s in out if [t.name for t in out].count(s.name) > 1})
    if dup:
        raise _err(field, f"duplicate inputs {dup}")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class TACEConfig:
    """Hyperparameters of the Cartesian TACE model.

    Attributes:
        atomic_numbers: the model's elements, strictly ascending (element index = position).
        cutoff: radial cutoff ``r_c`` in Å.
        num_layers: number of interaction/product layers ``T``.
        correlation: correlation order ``ν_max`` of the product basis.
        num_channel: node channels ``C``.
        num_channel_hidden: A/B-basis channels ``C_h`` (``None``: ``C``).
        lmax_node: node feature rank ``L_n`` (``Lmax``).
        lmax_edge: edge harmonic / A-basis / product rank ``L_e`` (``lmax``).
        bias: rank-0 biases in the linear layers.
        num_radial_basis: number of ``j0`` Bessel functions.
        polynomial_cutoff: envelope exponent ``p``.
        radial_hidden: hidden widths of the per-layer radial MLP.
        radial_act: activation of the radial MLP (``"silu"``).
        inter_l1l2: ``(l1, l2)`` restriction of the interaction paths.
        prod_l1l2: ``(l1, l2)`` restriction of the product-basis paths.
        prod_l3l1: ``(l3, l1)`` restriction of the product-basis paths.
        readout_hidden: hidden widths of the last-layer readouts.
        readout_act: readout activation (``"silu"``); rank > 0 readouts use a NormGate.
        use_all_layer: read out every layer (``True``) or only the last one.
        zbl: add the ZBL pair repulsion inside the scale (docs/theory.md §2.9).
        num_levels: number of fidelity levels ``M`` (per-level E0/σ/μ).
        use_multi_head: one readout head per level.
        targets: model outputs: ``"energy"`` plus any of ``"direct_forces"``,
            ``"direct_dipole"``, ``"direct_polarizability"``, ``"direct_virials"``.
            ``direct_dipole`` reads the per-atom input ``charges``; ``direct_virials`` also
            gives ``direct_stress = −V/|det L|`` (zero for molecules).
        invariant_embeddings: UIE inputs (:class:`InvariantEmbedding`), in concatenation
            order. Also accepts names, ``{"name": ..., **options}`` dicts or the reference's
            ``universal_embedding.invariant`` mapping.
        equivariant_embeddings: UEE inputs (:class:`EquivariantEmbedding`), same forms.
        uie_readout: add ``u_i·w/√C`` (a linear readout of the UIE vector) to the atomic
            energy, after the scale (needs ``invariant_embeddings``).
        charge_head: ``None``, ``"lagrangian"`` or ``"uniform_distribution"``: predict
            per-atom ``charges`` that sum to the input ``total_charge`` (docs/theory.md §2.10;
            the uniform head uses ``q_i = c_i + (Q − Σc)/N``, v0.1.0 has the sign reversed).
        les: add the Latent Ewald Summation energy (docs/theory.md §4); outputs
            ``latent_charges [N]`` and ``les_energy [G]``.
        les_sigma, les_dl: Gaussian width σ and grid resolution dl (Å, ``k_c = 2π/dl``).
        les_remove_self_interaction: leave out the Gaussian self energy.
        les_norm_factor: ``ℵ = 1/(2ε₀)`` in eV·Å/e² (90.4756; 90.0474 for v0.1.0 parity).
        les_output_scale: factor on the latent readout (``None``: 1, as v0.1.0).
        les_charge_source: ``"latent"`` (a readout summed over layers) or ``"lagrangian"``
            (the charges of ``charge_head="lagrangian"``, constrained to ``total_charge``).
        les_epsilon_factor, les_remove_mean: ε∞ and mean removal of the LES Born charges.
    """

    atomic_numbers: tuple[int, ...] = ()
    cutoff: float = 6.0
    num_layers: int = 2
    correlation: int = 3
    num_channel: int = 48
    num_channel_hidden: int | None = None
    lmax_node: int = 2
    lmax_edge: int = 3
    bias: bool = True
    num_radial_basis: int = 8
    polynomial_cutoff: int = 5
    radial_hidden: tuple[int, ...] = (64, 64, 64)
    radial_act: str = "silu"
    inter_l1l2: str | None = None
    prod_l1l2: str | None = None
    prod_l3l1: str | None = None
    readout_hidden: tuple[int, ...] = (16,)
    readout_act: str = "silu"
    use_all_layer: bool = True
    zbl: bool = True
    num_levels: int = 1
    use_multi_head: bool = False
    targets: tuple[str, ...] = ("energy",)
    invariant_embeddings: tuple[InvariantEmbedding, ...] = ()
    equivariant_embeddings: tuple[EquivariantEmbedding, ...] = ()
    uie_readout: bool = False
    charge_head: str | None = None
    les: bool = False
    les_sigma: float = 1.0
    les_dl: float = 2.0
    les_remove_self_interaction: bool = True
    les_norm_factor: float = NORM_FACTOR
    les_output_scale: float | None = None
    les_charge_source: str = "latent"
    les_epsilon_factor: float = 1.0
    les_remove_mean: bool = True

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("atomic_numbers", tuple(int(z) for z in self.atomic_numbers))
        set_("radial_hidden", tuple(int(w) for w in self.radial_hidden))
        set_("readout_hidden", tuple(int(w) for w in self.readout_hidden))
        set_("targets", tuple(self.targets))
        set_("cutoff", float(self.cutoff))
        for name in ("les_sigma", "les_dl", "les_norm_factor", "les_epsilon_factor"):
            if isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool):
                set_(name, float(getattr(self, name)))
        set_(
            "invariant_embeddings",
            _specs(self.invariant_embeddings, InvariantEmbedding, "invariant_embeddings"),
        )
        set_(
            "equivariant_embeddings",
            _specs(self.equivariant_embeddings, EquivariantEmbedding, "equivariant_embeddings"),
        )
        if self.num_channel_hidden is None:
            set_("num_channel_hidden", self.num_channel)
        self._validate()

    # ----------------------------------------------------------------------------- validation
    def _validate(self) -> None:
        z = self.atomic_numbers
        if len(z) == 0:
            raise _err("atomic_numbers", "must list at least one element")
        if any(not 1 <= x <= 118 for x in z):
            raise _err("atomic_numbers", f"must lie in 1..118, got {list(z)}")
        if len(set(z)) != len(z):
            raise _err("atomic_numbers", f"has duplicates: {list(z)}")
        if list(z) != sorted(z):
            raise _err("atomic_numbers", f"must be sorted ascending, got {list(z)}")
        if not self.cutoff > 0:
            raise _err("cutoff", f"must be > 0, got {self.cutoff}")
        for name in (
            "num_layers",
            "correlation",
            "num_channel",
            "num_channel_hidden",
            "num_radial_basis",
            "polynomial_cutoff",
            "num_levels",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise _err(name, f"must be an integer >= 1, got {v!r}")
        for name in ("lmax_node", "lmax_edge"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise _err(name, f"must be an integer >= 0, got {v!r}")
        if self.lmax_node > self.lmax_edge:
            raise _err(
                "lmax_node",
                f"L_n = {self.lmax_node} must not exceed lmax_edge L_e = {self.lmax_edge}",
            )
        if any(w < 1 for w in self.radial_hidden):
            raise _err("radial_hidden", f"widths must be >= 1, got {self.radial_hidden}")
        if any(w < 1 for w in self.readout_hidden):
            raise _err("readout_hidden", f"widths must be >= 1, got {self.readout_hidden}")
        for name in ("radial_act", "readout_act"):
            if getattr(self, name) not in _ACTS:
                raise _err(name, f"must be one of {_ACTS}, got {getattr(self, name)!r}")
        for name in ("inter_l1l2", "prod_l1l2", "prod_l3l1"):
            if getattr(self, name) not in L1L2_OPTIONS:
                raise _err(name, f"must be one of {L1L2_OPTIONS}, got {getattr(self, name)!r}")
        if "energy" not in self.targets:
            raise _err("targets", f"must contain 'energy', got {self.targets}")
        for t in self.targets:
            if t not in MODEL_HEADS:
                raise _err("targets", f"unknown target {t!r}; options: {MODEL_HEADS}")
        if len(set(self.targets)) != len(self.targets):
            raise _err("targets", f"has duplicates: {self.targets}")
        need = max(max(DIRECT_HEAD_RANKS[t]) for t in self.targets)
        if need > self.lmax_node:
            heads = [t for t in self.targets if max(DIRECT_HEAD_RANKS[t]) > self.lmax_node]
            raise _err(
                "lmax_node",
                f"heads {heads} need rank {need} node features, but L_n = {self.lmax_node}",
            )
        if self.use_multi_head and self.num_levels < 2:
            raise _err("use_multi_head", "needs num_levels >= 2")
        if not isinstance(self.uie_readout, bool):
            raise _err("uie_readout", f"must be a bool, got {self.uie_readout!r}")
        if self.uie_readout and not self.invariant_embeddings:
            raise _err("uie_readout", "needs at least one invariant embedding")
        if self.equivariant_embeddings and self.lmax_edge < 1:
            raise _err("equivariant_embeddings", f"need lmax_edge >= 1, got {self.lmax_edge}")
        if self.charge_head not in CHARGE_HEADS:
            raise _err("charge_head", f"must be one of {CHARGE_HEADS}, got {self.charge_head!r}")
        self._validate_les()

    def _validate_les(self) -> None:
        for name in ("les", "les_remove_self_interaction", "les_remove_mean"):
            if not isinstance(getattr(self, name), bool):
                raise _err(name, f"must be a bool, got {getattr(self, name)!r}")
        for name in ("les_sigma", "les_dl", "les_norm_factor", "les_epsilon_factor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
                raise _err(name, f"must be a finite number > 0, got {v!r}")
        v = self.les_output_scale
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise _err("les_output_scale", f"must be None or a number, got {v!r}")
        if self.les_charge_source not in LES_CHARGE_SOURCES:
            raise _err(
                "les_charge_source",
                f"must be one of {LES_CHARGE_SOURCES}, got {self.les_charge_source!r}",
            )
        if self.les and self.les_charge_source == "lagrangian" and self.charge_head != "lagrangian":
            raise _err("les_charge_source", "'lagrangian' needs charge_head='lagrangian'")

    # ------------------------------------------------------------------------- derived values
    @property
    def num_elements(self) -> int:
        return len(self.atomic_numbers)

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the ``graph.extras`` inputs the model reads (and only those).

        The embedded inputs (invariant, then equivariant, in config order), then ``charges``
        for ``direct_dipole``, ``total_charge`` for a charge head and ``level`` when
        ``num_levels > 1``, without repeats.
        """
        names = [e.name for e in self.invariant_embeddings]
        names += [e.name for e in self.equivariant_embeddings]
        if "direct_dipole" in self.targets:
            names.append("charges")
        if self.charge_head is not None:
            names.append("total_charge")
        if self.num_levels > 1:
            names.append("level")
        return tuple(dict.fromkeys(names))

    @property
    def input_limits(self) -> dict[str, int]:
        """Exclusive upper bounds of the integer inputs: ``num_embeddings`` of each integer
        embedding, and ``num_levels`` for ``level`` when ``num_levels > 1`` (the smaller one
        when both apply). The input assembler checks them; the jitted model cannot."""
        limits = {e.name: e.num_embeddings for e in self.invariant_embeddings if e.num_embeddings}
        if self.num_levels > 1:
            limits["level"] = min(limits.get("level", self.num_levels), self.num_levels)
        return limits

    @property
    def outputs(self) -> tuple[str, ...]:
        """Model outputs besides ``energy``/``node_energy``/``scalar_descriptor``."""
        out = list(self.targets[1:])
        if "direct_virials" in self.targets:
            out.append("direct_stress")
        if self.charge_head is not None:
            out.append("charges")
        if self.les:
            out += ["latent_charges", "les_energy"]
        return tuple(out)

    @property
    def target_ranks(self) -> tuple[int, ...]:
        """Ranks the last layer must produce (sorted union over the heads, docs/theory.md §2.7)."""
        return tuple(sorted({r for t in self.targets for r in DIRECT_HEAD_RANKS[t]}))

    def input_ranks(self, t: int) -> tuple[int, ...]:
        """Node ranks entering interaction ``t``: ``{0}`` for ``t = 0``, else ``0..L_n``."""
        return (0,) if t == 0 else tuple(range(self.lmax_node + 1))

    def output_ranks(self, t: int) -> tuple[int, ...]:
        """Node ranks produced by layer ``t`` (target ranks for the last layer)."""
        if t == self.num_layers - 1:
            return self.target_ranks
        return tuple(range(self.lmax_node + 1))

    def readout_layers(self) -> tuple[int, ...]:
        """Layers with readouts: all of them, or only the last (``use_all_layer=False``)."""
        if self.use_all_layer:
            return tuple(range(self.num_layers))
        return (self.num_layers - 1,)

    # -------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A json-able dict (tuples become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("invariant_embeddings", "equivariant_embeddings"):
                v = [dataclasses.asdict(e) for e in v]
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TACEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TACEConfig.from_dict: unknown keys {unknown}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)

    @classmethod
    def from_reference(
        cls,
        model_config: Mapping[str, Any],
        atomic_numbers: Sequence[int],
        target_property: Sequence[str] = ("energy",),
    ) -> TACEConfig:
        """Build from a reference TACE ``model_config`` dict (fixture json or yaml).

        See :func:`tace_jax.models.reference_config.config_from_model_config`.

        Raises:
            NotImplementedError: for reference options that this port does not implement.
        """
        from .reference_config import config_from_model_config

        return config_from_model_config(model_config, atomic_numbers, target_property)
