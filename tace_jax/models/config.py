"""``TACEConfig``: the frozen, validated hyperparameters of a TACE model (TACE_SPEC §5.1).

Defaults are the reference ``cart_tacev1.yaml`` (v0.1.0): 2 layers, correlation 3, 48 channels,
``L_n = 2``, ``L_e = 3``, 8 ``j0`` radial functions with a ``p = 5`` polynomial envelope, radial MLP
``[64, 64, 64]`` (SiLU, no bias), last readout hidden width 16, all-layer readouts and ZBL on.
The compute dtype is not part of the config: the model computes in the dtype of its inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["TACEConfig", "TARGETS", "L1L2_OPTIONS", "DIRECT_HEAD_RANKS"]

TARGETS = ("energy", "direct_forces", "direct_dipole", "direct_polarizability", "direct_virials")
L1L2_OPTIONS = (None, "<=", "<", "==", ">=", ">", "!=")
# ranks each head reads from the last layer (TACE_SPEC §2.7)
DIRECT_HEAD_RANKS = {
    "energy": (0,),
    "direct_forces": (1,),
    "direct_dipole": (1,),
    "direct_polarizability": (0, 2),
    "direct_virials": (0, 2),
}
_ACTS = ("silu",)


def _err(field: str, msg: str) -> ValueError:
    return ValueError(f"TACEConfig.{field}: {msg}")


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
        zbl: add the ZBL pair repulsion inside the scale (TACE_SPEC §2.9).
        num_levels: number of fidelity levels ``M`` (per-level E0/σ/μ).
        use_multi_head: one readout head per level.
        targets: model outputs: ``"energy"`` plus any of ``"direct_forces"``,
            ``"direct_dipole"``, ``"direct_polarizability"``, ``"direct_virials"``.
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

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("atomic_numbers", tuple(int(z) for z in self.atomic_numbers))
        set_("radial_hidden", tuple(int(w) for w in self.radial_hidden))
        set_("readout_hidden", tuple(int(w) for w in self.readout_hidden))
        set_("targets", tuple(self.targets))
        set_("cutoff", float(self.cutoff))
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
            if t not in TARGETS:
                raise _err("targets", f"unknown target {t!r}; options: {TARGETS}")
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

    # ------------------------------------------------------------------------- derived values
    @property
    def num_elements(self) -> int:
        return len(self.atomic_numbers)

    @property
    def target_ranks(self) -> tuple[int, ...]:
        """Ranks the last layer must produce (sorted union over the heads, TACE_SPEC §2.7)."""
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

        Args:
            model_config: the reference config (keys of ``cart_tacev1.yaml``).
            atomic_numbers: the model elements (sorted ascending).
            target_property: reference targets; ``direct_*`` entries become heads, the
                conservative ones (forces, stress, …) need only the energy.

        Raises:
            NotImplementedError: for reference options that this port does not implement
                (LES, UIE/UEE embeddings, nonlinearity, resnet, density normaliser, …).
        """
        mc = model_config
        rb = mc.get("radial_basis", {})
        rm = mc.get("radial_mlp", {})
        inter = mc.get("inter", {})
        prod = mc.get("prod", {})
        ro = mc.get("readout_emlp", {})
        unsupported = []
        if rb.get("radial_basis", "j0") != "j0" or rb.get("distance_transform") is not None:
            unsupported.append("radial_basis (only j0 without distance transform)")
        if not rb.get("apply_cutoff", True) or rb.get("trainable", False):
            unsupported.append("radial_basis.apply_cutoff=False / trainable")
        if rm.get("bias", False):
            unsupported.append("radial_mlp.bias")
        if inter.get("normalizer", "avg_num_neighbors") != "avg_num_neighbors":
            unsupported.append("inter.normalizer")
        if (inter.get("nonlinearity") or {}).get("type") is not None:
            unsupported.append("inter.nonlinearity")
        if inter.get("use_resnet", False) or (inter.get("sc") or {}).get("use_first_sc", False):
            unsupported.append("inter.use_resnet / sc.use_first_sc")
        if list(inter.get("conv_weights", ["edge_ij"])) != ["edge_ij"]:
            unsupported.append("inter.conv_weights")
        if prod.get("precompute", False) or not prod.get("element_aware", True):
            unsupported.append("prod.precompute / element_aware=False")
        if not prod.get("coupled_channel", True):
            unsupported.append("prod.coupled_channel=False")
        if ro.get("bias", False) or ro.get("enable_uie_readout", False):
            unsupported.append("readout_emlp.bias / enable_uie_readout")
        les = ((mc.get("long_range") or {}).get("les") or {}).get("enable", False)
        if les:
            unsupported.append("long_range.les")
        ue = mc.get("universal_embedding") or {}
        for kind in ("invariant", "equivariant"):
            for name, opt in (ue.get(kind) or {}).items():
                if (opt or {}).get("enable", False):
                    unsupported.append(f"universal_embedding.{kind}.{name}")
        if unsupported:
            raise NotImplementedError(f"reference options not supported: {unsupported}")
        targets = ["energy"] + [t for t in TARGETS[1:] if t in target_property]
        hidden = ro.get("hidden_dim", [16])  # v0.1.0 reads hidden_dim, not hidden (README §9)
        return cls(
            atomic_numbers=tuple(sorted(int(z) for z in atomic_numbers)),
            cutoff=float(mc["cutoff"]),
            num_layers=int(mc.get("num_layers", 2)),
            correlation=int(prod.get("correlation", 3)),
            num_channel=int(mc.get("num_channel", 48)),
            num_channel_hidden=int(mc.get("num_channel_hidden") or mc.get("num_channel", 48)),
            lmax_node=int(mc.get("Lmax", 2)),
            lmax_edge=int(mc.get("lmax", 3)),
            bias=bool(mc.get("bias", True)),
            num_radial_basis=int(rb.get("num_radial_basis", 8)),
            polynomial_cutoff=int(rb.get("polynomial_cutoff", 5)),
            radial_hidden=tuple(rm.get("hidden", (64, 64, 64))),
            radial_act=rm.get("act", "silu"),
            inter_l1l2=inter.get("l1l2"),
            prod_l1l2=prod.get("l1l2"),
            prod_l3l1=prod.get("l3l1"),
            readout_hidden=tuple(hidden if isinstance(hidden, (list, tuple)) else [hidden]),
            readout_act=ro.get("act", "silu"),
            use_all_layer=bool(ro.get("use_all_layer", True)),
            zbl=bool(((mc.get("short_range") or {}).get("zbl") or {}).get("enable", False)),
            num_levels=int(mc.get("num_levels", 1)),
            use_multi_head=bool(mc.get("use_multi_head", False)),
            targets=tuple(targets),
        )
