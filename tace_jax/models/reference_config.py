"""``TACEConfig`` from a reference PyTorch TACE v0.1.0 ``model_config`` (fixture json or yaml).

The reference keys map as follows (docs/theory.md §5.1): ``Lmax``/``lmax`` → ``lmax_node``/
``lmax_edge``, ``prod.correlation`` → ``correlation``, ``readout_emlp.hidden_dim`` →
``readout_hidden`` (v0.1.0 ignores ``readout_emlp.hidden``), ``short_range.zbl.enable`` →
``zbl``, the enabled entries of ``universal_embedding.invariant``/``.equivariant`` (in key
order) → ``invariant_embeddings``/``equivariant_embeddings``,
``readout_emlp.enable_uie_readout`` → ``uie_readout``, when ``charges`` is a target,
``conservation.charges.method`` → ``charge_head``, and ``long_range.les`` (enabled, charge-only)
→ the ``les_*`` fields (``les_arguments.sigma``, ``dl``, ``remove_self_interaction``,
``remove_mean``, ``epsilon_factor``; ℵ = 90.0474 as in v0.1.0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tace_jax.ops.latent_ewald import NORM_FACTOR_V010

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
    les = (mc.get("long_range") or {}).get("les") or {}
    if les.get("enable", False) and (les.get("les_arguments") or {}).get("use_atomwise", False):
        out.append("long_range.les.les_arguments.use_atomwise=True")
    return out


def _les_fields(mc: Mapping[str, Any]) -> dict[str, Any]:
    """``TACEConfig`` LES fields from ``long_range.les`` (docs/theory.md §4).

    The reference is v0.1.0, so ``norm_factor`` defaults to its 90.0474 unless the section
    names one; ``output_scale`` (a later TACE option) is read when present.
    """
    les = (mc.get("long_range") or {}).get("les") or {}
    if not les.get("enable", False):
        return {}
    a = les.get("les_arguments") or {}
    return {
        "les": True,
        "les_sigma": float(a.get("sigma", 1.0)),
        "les_dl": float(a.get("dl", 2.0)),
        "les_remove_self_interaction": bool(a.get("remove_self_interaction", True)),
        "les_norm_factor": float(a.get("norm_factor", NORM_FACTOR_V010)),
        "les_output_scale": les.get("output_scale", a.get("output_scale")),
        "les_epsilon_factor": float(a.get("epsilon_factor", 1.0)),
        "les_remove_mean": bool(a.get("remove_mean", True)),
    }


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
            (LES with ``use_atomwise``, interaction nonlinearity, resnet, …).
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
        **_les_fields(mc),
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
