"""Low-rank adapters (LoRA) for fine-tuning a TACE model (arXiv 2509.14961, fine-tuning).

The targets are the channel-mixing ``Linear_l`` and element-dependent ``ElementLinear_l`` maps of
``docs/theory.md`` §1.6; the adapters act on the stored (unscaled) weights, so the forward-time
``α = 1/√C_in`` applies to ``W_eff`` as it does to ``W``.

A LoRA target is a weight leaf ``W`` of shape ``[..., d0, d1]``; its adapter is a pair
``A [..., d0, r]``, ``B [..., r, d1]`` and the effective weight is

    W_eff = W + (alpha / r) · A @ B

with ``B = 0`` at initialisation, so that the adapted model reproduces the base model exactly at
step 0 (``A @ B`` is an exact zero and ``W + 0 = W``). The channel-mixing linears
(``linear_up/down/out``, ``[d_in, d_out]``) get one adapter each. The element-dependent linears
(self-connection ``sc_l/weights`` and product ``linears_ν_l``, ``[Z, ·, ·]``) get one adapter
*per element*: the leading element axis is kept on ``A`` and ``B`` (the matmul broadcasts over
it), so each element's matrix receives its own rank-``r`` update (``Z·r·(d0 + d1)``
parameters), as each element has its own matrix in the base model.

The parameters of an adapted model are ``{"base": <TACE params>, "lora": <adapters>}``, where
the adapter tree mirrors the base tree with each target leaf replaced by ``{"a": A, "b": B}``.
:func:`merge_lora` turns them back into plain TACE parameters (what is exported);
:func:`save_adapters` / :func:`load_adapters` / :func:`apply_adapters` store the adapters alone
and apply them onto a base :class:`~tace_jax.inference.Potential`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

__all__ = [
    "LORA_TARGET_ALIASES",
    "apply_adapters",
    "init_lora",
    "is_lora_params",
    "load_adapters",
    "lora_target_paths",
    "merge_lora",
    "path_name",
    "save_adapters",
]

#: Named groups of LoRA targets (regular expressions searched in ``a/b/c`` parameter paths).
LORA_TARGET_ALIASES = {
    "channel_linears": r"^(interaction|product)_\d+/linear_(up|down|out)_\d+/weight$",
    "element_linears": r"^(interaction_\d+/sc_\d+/weights|product_\d+/linears_\d+_\d+)$",
}

_FORMAT = "tace_jax.lora"
_VERSION = 1


def path_name(path: Sequence[str]) -> str:
    """``("interaction_0", "linear_up_0", "weight")`` → ``"interaction_0/linear_up_0/weight"``."""
    return "/".join(str(p) for p in path)


def pattern_regex(pattern: str, aliases: Mapping[str, str]) -> str:
    """The regular expression of a pattern: an alias's expression, else the pattern itself."""
    return aliases.get(pattern, pattern)


def lora_target_paths(params: Mapping, targets: Sequence[str]) -> list[tuple[str, ...]]:
    """Paths of the weight leaves that the ``targets`` patterns select (sorted).

    Args:
        params: TACE parameters (``variables["params"]``).
        targets: aliases of :data:`LORA_TARGET_ALIASES` or regular expressions searched in
            ``a/b/c`` paths.

    Raises:
        ValueError: a pattern selects nothing, or selects a leaf with fewer than 2 axes.
    """
    flat = traverse_util.flatten_dict(dict(params))
    out = set()
    for pat in targets:
        rx = re.compile(pattern_regex(pat, LORA_TARGET_ALIASES))
        hits = [p for p in flat if rx.search(path_name(p))]
        if not hits:
            names = ", ".join(sorted(path_name(p) for p in flat)[:8])
            raise ValueError(
                f"finetune.lora.targets: {pat!r} matches no parameter (e.g. {names}, ...)"
            )
        for p in hits:
            if np.ndim(flat[p]) < 2:
                raise ValueError(
                    f"finetune.lora.targets: {pat!r} selects {path_name(p)} of shape "
                    f"{np.shape(flat[p])}; LoRA needs a matrix ([d0, d1] or [Z, d0, d1])"
                )
            out.add(p)
    return sorted(out)


def init_lora(key, params: Mapping, paths: Sequence[tuple[str, ...]], rank: int, dtype) -> dict:
    """Adapters for ``paths``: ``A ~ N(0, 1/r)`` (random), ``B = 0`` (exact zero update)."""
    flat = traverse_util.flatten_dict(dict(params))
    out = {}
    for i, p in enumerate(paths):
        shape = np.shape(flat[p])
        lead, (d0, d1) = shape[:-2], shape[-2:]
        a = jax.random.normal(jax.random.fold_in(key, i), (*lead, d0, rank), dtype)
        out[(*p, "a")] = a / np.sqrt(rank).astype(dtype)
        out[(*p, "b")] = jnp.zeros((*lead, rank, d1), dtype)
    return traverse_util.unflatten_dict(out)


def is_lora_params(params) -> bool:
    """True for the ``{"base": ..., "lora": ...}`` parameters of an adapted model."""
    return isinstance(params, Mapping) and set(params) == {"base", "lora"}


def merge_lora(base: Mapping, lora: Mapping, scale: float) -> dict:
    """Plain parameters ``W + scale · A @ B`` for every adapted leaf (others unchanged).

    Args:
        base: the base TACE parameters.
        lora: adapters (:func:`init_lora` layout).
        scale: ``alpha / r``.

    Raises:
        KeyError: an adapter for a parameter the base model does not have.
    """
    flat = traverse_util.flatten_dict(dict(base))
    for p, ab in traverse_util.flatten_dict(dict(lora), is_leaf=_is_ab).items():
        if p not in flat:
            raise KeyError(f"LoRA adapter for {path_name(p)}: not a parameter of the base model")
        w = flat[p]
        delta = jnp.matmul(ab["a"], ab["b"]).astype(w.dtype)
        if delta.shape != np.shape(w):
            raise KeyError(
                f"LoRA adapter for {path_name(p)}: A @ B has shape {delta.shape}, the weight "
                f"{np.shape(w)}"
            )
        flat[p] = w + jnp.asarray(scale, w.dtype) * delta
    return traverse_util.unflatten_dict(flat)


def _is_ab(_path, x) -> bool:
    return isinstance(x, Mapping) and set(x) == {"a", "b"}


def save_adapters(
    path: str | os.PathLike, lora: Mapping, rank: int, alpha: float, statistics=None
) -> None:
    """Write the adapters alone (an ``.npz`` with the arrays and a json header).

    ``statistics`` (optional :class:`~tace_jax.models.Statistics`): those of the fine-tuned
    model (e.g. a refitted E0), restored by :func:`apply_adapters`.
    """
    flat = traverse_util.flatten_dict(dict(jax.device_get(lora)))
    arrays = {path_name(p): np.asarray(v) for p, v in flat.items()}
    meta = {"format": _FORMAT, "version": _VERSION, "rank": int(rank), "alpha": float(alpha)}
    if statistics is not None:
        meta["statistics"] = statistics.to_dict()
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, __meta__=np.asarray(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def load_adapters(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(adapters, header)`` from a :func:`save_adapters` file (header: rank, alpha and
    optionally statistics).

    Raises:
        ValueError: not an adapters file, or an unknown version.
    """
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as z:
        if "__meta__" not in z.files:
            raise ValueError(f"{path}: not a LoRA adapters file (no __meta__ entry)")
        meta = json.loads(str(z["__meta__"]))
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ValueError(f"{path}: unknown adapters format {meta.get('format')!r}")
        flat = {tuple(k.split("/")): z[k] for k in z.files if k != "__meta__"}
    return traverse_util.unflatten_dict(flat), meta


def apply_adapters(potential, path: str | os.PathLike):
    """A new :class:`~tace_jax.inference.Potential`: ``potential`` with the adapters of the file
    ``path`` merged into its weights (and the file's statistics, if it has them)."""
    from tace_jax.inference import Potential
    from tace_jax.models import Statistics

    lora, meta = load_adapters(path)
    variables = dict(potential.variables)
    try:
        variables["params"] = merge_lora(variables["params"], lora, meta["alpha"] / meta["rank"])
    except KeyError as e:
        raise ValueError(f"{os.fspath(path)}: {e.args[0]}") from None
    stats = meta.get("statistics")
    stats = potential.statistics if stats is None else Statistics.from_dict(stats)
    return Potential(potential.config, stats, variables, dtype=potential.dtype)
