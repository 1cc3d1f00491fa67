"""``TACEConfig`` from a reference PyTorch TACE v0.1.0 ``model_config`` (fixture json or yaml).

The reference keys map as follows (TACE_SPEC §5.1): ``Lmax``/``lmax`` → ``lmax_node``/
``lmax_edge``, ``prod.correlation`` → ``correlation``, ``readout_emlp.hidden_dim`` →
``readout_hidden`` (v0.1.0 ignores ``readout_emlp.hidden``), ``short_range.zbl.enable`` →
``zbl``, the enabled entries of ``universal_embedding.invariant``/``.equivariant`` (in key
order) → ``invariant_embeddings``/``equivariant_embeddings``,
``readout_emlp.enable_uie_readout`` → ``uie_readout`` and, when ``charges`` is a target,
``conservation.charges.method`` → ``charge_head``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .config import MODEL_HEADS, TACEConfig

__all__ = ["config_from_model_config"]


def _unsupported(mc: Mapping[str, Any]) -> list[str]:
    rb = mc.get("radial_basis", {})
    rm = mc.get("radial_mlp", {})
    inter = mc.get("inter", {})
    prod = mc.get("prod", {})
    ro = mc.get("readout_emlp", {})
    out = []
    if rb.get("radial_basis", "j0") != "j0" or rb.get("distance_transform") is not None:
        out.append("radial_basis (only j0 without distance transform)")
    if not rb.get("apply_cutoff", True) or rb.get("trainable", False):
        out.append("radial_basis.apply_cutoff=False / trainable")
    if rm.get("bias", False):
        out.append("radial_mlp.bias")
    if inter.get("normalizer", "avg_num_neighbors") != "avg_num_neighbors":
        out.append("inter.normalizer")
    if (inter.get("nonlinearity") or {}).get("type") is not None:
        out.append("inter.nonlinearity")
    if inter.get("use_resnet", False) or (inter.get("sc") or {}).get("use_first_sc", False):
        out.append("inter.use_resnet / sc.use_first_sc")
    if list(inter.get("conv_weights", ["edge_ij"])) != ["edge_ij"]:
        out.append("inter.conv_weights")
    if prod.get("precompute", False) or not prod.get("element_aware", True):
        out.append("prod.precompute / element_aware=False")
    if not prod.get("coupled_channel", True):
        out.append("prod.coupled_channel=False")
    if ro.get("bias", False):
        out.append("readout_emlp.bias")
    if ro.get("gate", "silu") != "silu":
        out.append(f"readout_emlp.gate={ro.get('gate')!r}")
    if ((mc.get("long_range") or {}).get("les") or {}).get("enable", False):
        out.append("long_range.les")
    return out


def config_from_model_config(
    model_config: Mapping[str, Any],
    atomic_numbers: Sequence[int],
    target_property: Sequence[str] = ("energy",),
) -> TACEConfig:
    """Translate a reference ``model_config``.

    Args:
        model_config: the reference config (keys of ``cart_tacev1.yaml``).
        atomic_numbers: the model elements (sorted ascending).
        target_property: reference targets; ``direct_*`` entries become heads, ``charges``
            enables the charge head of ``conservation.charges.method``, the conservative ones
            (forces, stress, polarization, …) need only the energy.

    Raises:
        NotImplementedError: for reference options that this port does not implement
            (LES, interaction nonlinearity, resnet, density normaliser, …).
        ValueError: invalid values (from :class:`TACEConfig` validation).
    """
    mc = model_config
    unsupported = _unsupported(mc)
    if unsupported:
        raise NotImplementedError(f"reference options not supported: {unsupported}")
    rb = mc.get("radial_basis", {})
    rm = mc.get("radial_mlp", {})
    inter = mc.get("inter", {})
    prod = mc.get("prod", {})
    ro = mc.get("readout_emlp", {})
    ue = mc.get("universal_embedding") or {}
    targets = ["energy"] + [t for t in MODEL_HEADS[1:] if t in target_property]
    hidden = ro.get("hidden_dim", [16])  # v0.1.0 reads hidden_dim, not hidden (README §9)
    charge_head = None
    if "charges" in target_property:
        charge_head = ((mc.get("conservation") or {}).get("charges") or {}).get(
            "method", "lagrangian"
        )
    return TACEConfig(
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
        invariant_embeddings=_embeddings(ue.get("invariant") or {}, integer=True),
        equivariant_embeddings=_embeddings(ue.get("equivariant") or {}, integer=False),
        uie_readout=bool(ro.get("enable_uie_readout", False)),
        charge_head=charge_head,
    )


def _embeddings(section: Mapping[str, Any], integer: bool) -> tuple[dict, ...]:
    """Enabled entries of a ``universal_embedding`` section, in key order, as spec dicts."""
    from tace_jax.nn.uie import INTEGER_UIE

    out = []
    for name, opt in section.items():
        opt = dict(opt or {})
        if not opt.pop("enable", False):
            continue
        if integer and name not in INTEGER_UIE:
            opt.pop("num_embeddings", None)
        out.append({"name": name, **opt})
    return tuple(out)
