"""Reference PyTorch TACE v0.1.0 parameter names → Flax parameter paths of :class:`TACE`.

Shared by :func:`~tace_jax.models.load_reference` and the checkpoint converter
(:mod:`tace_jax.models.torch_import` writes the reference names, this table reads them).

Weights are stored unscaled on both sides (the forward-time ``α`` factors live in the modules).
TACE's own dense weights are ``[in, out]`` and element weights ``[Z, out, in]``, as here. The
universal invariant embedding layers are plain ``torch.nn.Linear`` (``[out, in]``, transposed on
import) and ``torch.nn.Embedding`` (``[num_embeddings, C]``) without ``α`` (fixture README
§10.3). Readout module lists are indexed by readout layer (``TACEConfig.readout_layers``).
"""

from __future__ import annotations

import re

from .config import TACEConfig

__all__ = ["torch_to_path", "HEAD_MODULES"]

_P = "readout_fn."
_D = _P + "descriptor."

#: torch module list → (our key, rank) of the per-layer tensor/scalar heads
HEAD_MODULES = {
    "dipole_readouts": ("dipole", 1),
    "direct_forces_readouts": ("forces", 1),
    "direct_polarizability_readout0s": ("polarizability", 0),
    "direct_polarizability_readout2s": ("polarizability", 2),
    # not verified (the v0.1.0 direct-virials forward pass fails): named like polarizability
    "direct_virials_readout0s": ("virials", 0),
    "direct_virials_readout2s": ("virials", 2),
}
_UEE_LEAF = {
    "element_weights": ("element_weights",),
    "channel_weights": ("channel_weights",),
    "nonlinearity.weight": ("gate_weight",),
    "nonlinearity.bias": ("gate_bias",),
    "linear.weight": ("linear", "weight"),
}


def _descriptor(rest: str, cfg: TACEConfig) -> tuple[tuple[str, ...], bool] | None:
    if rest == "node_embedding.mlp.0.weight":
        return ("node_embedding", "weight"), False
    if m := re.fullmatch(r"interactions\.(\d+)\.(.+)", rest):
        t, rest = int(m.group(1)), m.group(2)
        mod = f"interaction_{t}"
        if mm := re.fullmatch(r"linear_up\.linears\.(\d+)\.(weight|bias)", rest):
            return (mod, f"linear_up_{cfg.input_ranks(t)[int(mm.group(1))]}", mm.group(2)), False
        if mm := re.fullmatch(r"radial_net\.mlp\.(\d+)\.weight", rest):
            return (mod, "radial_net", f"weight_{int(mm.group(1)) // 2}"), False
        if mm := re.fullmatch(r"tc\.linear_downs\.(\d+)\.weight", rest):
            return (mod, f"linear_down_{int(mm.group(1))}", "weight"), False
        if mm := re.fullmatch(r"scs\.(\d+)\.(weights|bias)", rest):
            return (mod, f"sc_{cfg.output_ranks(t)[int(mm.group(1))]}", mm.group(2)), False
    if m := re.fullmatch(r"products\.(\d+)\.(.+)", rest):
        t, rest = int(m.group(1)), m.group(2)
        mod, ranks = f"product_{t}", cfg.output_ranks(t)
        if mm := re.fullmatch(r"linears\.(\d+)\.(\d+)\.(weights|bias)", rest):
            nu, l = int(mm.group(1)), ranks[int(mm.group(2))]
            suffix = "" if mm.group(3) == "weights" else "_bias"
            return (mod, f"linears_{nu}_{l}{suffix}"), False
        if mm := re.fullmatch(r"linear\.linears\.(\d+)\.(weight|bias)", rest):
            return (mod, f"linear_out_{ranks[int(mm.group(1))]}", mm.group(2)), False
    if m := re.fullmatch(r"uie_embedding\.embeddings\.(\w+)\.weight", rest):
        return ("uie", m.group(1), "table"), False
    if m := re.fullmatch(r"uie_embedding\.embeddings\.(\w+)\.(0|2)\.weight", rest):
        return ("uie", m.group(1), f"weight_{int(m.group(2)) // 2}"), True
    if rest == "uie_embedding.project.0.weight":
        return ("uie", "project"), True
    if m := re.fullmatch(r"uee_embeddings\.(\d+)\.embeddings\.(\w+)\.(.+)", rest):
        leaf = _UEE_LEAF.get(m.group(3))
        if leaf is not None:
            return (f"uee_{int(m.group(1))}_{m.group(2)}", *leaf), False
    return None


def _readout(name: str, cfg: TACEConfig) -> tuple[tuple[str, ...], bool] | None:
    m = re.fullmatch(r"(\w+)\.(\d+)\.(.+)", name)
    if m is None:
        return None
    module, idx, rest = m.group(1), int(m.group(2)), m.group(3)
    layers = cfg.readout_layers()
    if idx >= len(layers):
        return None
    t = layers[idx]
    n_hidden = len(cfg.readout_hidden) if t == cfg.num_layers - 1 else 0
    key, l = HEAD_MODULES.get(module, (None, -1))
    if module == "energy_readouts" or l == 0:
        mod = f"energy_readout_{t}" if module == "energy_readouts" else f"{key}_readout_0_{t}"
        if mm := re.fullmatch(r"mlp\.(\d+)\.weight", rest):  # one head: mlp.{2k}
            return (mod, f"weight_{int(mm.group(1)) // 2}"), False
        if mm := re.fullmatch(r"mlp_(\d+)\.0\.weight", rest):  # multi-head: mlp_{k+1}.0
            return (mod, f"weight_{int(mm.group(1)) - 1}"), False
        return None
    if l > 0:
        mod = f"{key}_readout_{l}_{t}"
        if rest == "linear_2.weight":
            return (mod, f"linear_{n_hidden}", "weight"), False
        if mm := re.fullmatch(r"linears_1\.(\d+)\.weight", rest):
            return (mod, f"linear_{int(mm.group(1))}", "weight"), False
        if mm := re.fullmatch(r"gates\.(\d+)\.(weight|bias)", rest):
            return (mod, f"gate_{int(mm.group(1))}", mm.group(2)), False
    return None


def torch_to_path(name: str, cfg: TACEConfig) -> tuple[tuple[str, ...], bool]:
    """``(Flax parameter path, transpose?)`` of one reference parameter name.

    Raises:
        KeyError: a name without a mapping.
    """
    res = None
    if name == _P + "uie_readout.mlp.0.weight":
        res = ("uie_readout", "weight_0"), False
    elif name.startswith(_D):
        res = _descriptor(name[len(_D) :], cfg)
    elif name.startswith(_P):
        res = _readout(name[len(_P) :], cfg)
    if res is None:
        raise KeyError(f"no mapping for reference parameter {name!r}")
    return res
