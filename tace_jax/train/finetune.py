"""Fine-tuning a trained TACE model: the ``finetune`` config, the base model, frozen layers and
LoRA (arXiv 2509.14961, fine-tuning; ``docs/theory.md`` §5).

The ``finetune`` mapping of a training config::

    finetune:
      from: runs/base/model        # a Potential file (or a training output directory),
                                   # a reference fixture pair (x.npz next to x.json, or
                                   # [x.npz, x.json]), or a torch checkpoint (.ckpt/.pt/.pth,
                                   # read through tace_jax.models.torch_import)
      torch_config: null           # model config of a torch checkpoint without one
      freeze: [embeddings, first_interaction, radial]   # parameter-path patterns
      lora: {rank: 4, alpha: 8.0, targets: [channel_linears, element_linears]}
      e0: base                     # base: keep the base E0; refit: refit E0 on the new data

The model (config and dataset statistics σ, μ, n̄) is the base model's; a ``model`` section, if
any, must agree with it. ``e0: refit`` adds to the base E0 the minimum-norm least-squares
correction that fits the base model's energy residuals on the new training set (only
composition directions the new data determine change).

Patterns are aliases of :data:`FREEZE_ALIASES` or ``tace_jax.train.lora.LORA_TARGET_ALIASES``
or regular expressions searched in ``a/b/c`` parameter paths (e.g. ``^interaction_0/``).
Frozen parameters get no optimiser state (:func:`tace_jax.train.optimizer.make_optimizer` with
labels). With ``lora`` the whole base is frozen and only the adapters train
(:mod:`tace_jax.train.lora`); the exported model has the adapters merged, and the adapters
alone are written next to it as ``lora_adapters.npz``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import re
from collections.abc import Mapping

import jax
import numpy as np
from flax import traverse_util

from tace_jax.models import Statistics, TACEConfig

from .config import ConfigError
from .lora import (
    init_lora,
    is_lora_params,
    lora_target_paths,
    merge_lora,
    path_name,
    pattern_regex,
    save_adapters,
)
from .optimizer import FROZEN, TRAINABLE, make_optimizer
from .prepare import label_report

__all__ = [
    "FREEZE_ALIASES",
    "BaseModel",
    "FinetuneModel",
    "check_model_section",
    "count_parameters",
    "finetune_statistics",
    "freeze_labels",
    "load_base",
    "prepare_finetune",
    "validate_finetune",
]

#: Named groups of parameters for ``finetune.freeze`` (regular expressions on ``a/b/c`` paths).
FREEZE_ALIASES = {
    "embeddings": r"^(node_embedding|uie|uee_[^/]+)(/|$)",
    "first_interaction": r"^interaction_0/",
    "first_layer": r"^(interaction_0|product_0)/",
    "radial": r"(^|/)radial_net/",
    "readouts": r"readout",
}

_KEYS = ("from", "torch_config", "freeze", "lora", "e0")
_LORA_KEYS = ("rank", "alpha", "targets")
_DEFAULT_TARGETS = ("channel_linears", "element_linears")


def _unknown(where: str, key, known) -> ConfigError:
    close = difflib.get_close_matches(str(key), list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"config key '{where}': unknown key {key!r}{hint}")


def _str_list(value, where: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key '{where}': expected a list of strings, got {value!r}")
    for v in value:
        try:
            re.compile(v)
        except re.error as e:
            msg = f"config key '{where}': {v!r} is not a regular expression: {e}"
            raise ConfigError(msg) from None
    return list(value)


def validate_finetune(d: Mapping) -> dict:
    """The ``finetune`` mapping with defaults filled in ({} stays {}: no fine-tuning).

    Raises:
        ConfigError: unknown keys, a missing ``from``, bad types or values.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"config key 'finetune': expected a mapping, got {d!r}")
    if not d:
        return {}
    for k in d:
        if k not in _KEYS:
            raise _unknown("finetune", k, _KEYS)
    src = d.get("from")
    if isinstance(src, (list, tuple)):
        if len(src) != 2 or not all(isinstance(s, str) for s in src):
            raise ConfigError(f"config key 'finetune.from': expected [npz, json], got {src!r}")
    elif not isinstance(src, str) or not src:
        raise ConfigError("config key 'finetune.from' is required: the base model's file")
    e0 = d.get("e0", "base")
    if e0 not in ("base", "refit"):
        raise ConfigError(f"config key 'finetune.e0': {e0!r} is not 'base' or 'refit'")
    freeze = _str_list(d.get("freeze") or [], "finetune.freeze")
    lora = d.get("lora")
    if lora is not None:
        if not isinstance(lora, Mapping):
            raise ConfigError(f"config key 'finetune.lora': expected a mapping, got {lora!r}")
        for k in lora:
            if k not in _LORA_KEYS:
                raise _unknown("finetune.lora", k, _LORA_KEYS)
        rank = lora.get("rank", 4)
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ConfigError(f"config key 'finetune.lora.rank': {rank!r} is not an integer ≥ 1")
        alpha = lora.get("alpha", float(rank))
        if isinstance(alpha, str):
            try:
                alpha = float(alpha)
            except ValueError:
                pass
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
            raise ConfigError(f"config key 'finetune.lora.alpha': {alpha!r} must be a number > 0")
        targets = _str_list(lora.get("targets", list(_DEFAULT_TARGETS)), "finetune.lora.targets")
        if not targets:
            raise ConfigError("config key 'finetune.lora.targets': empty")
        if freeze:
            raise ConfigError(
                "config keys 'finetune.freeze' and 'finetune.lora': with LoRA the whole base "
                "model is frozen; leave finetune.freeze empty"
            )
        lora = {"rank": rank, "alpha": float(alpha), "targets": targets}
    return {
        "from": list(src) if isinstance(src, (list, tuple)) else src,
        "torch_config": d.get("torch_config"),
        "freeze": freeze,
        "lora": lora,
        "e0": e0,
    }


@dataclasses.dataclass(frozen=True)
class BaseModel:
    """The model a fine-tuning run starts from (config, statistics, variables, source)."""

    config: TACEConfig
    statistics: Statistics
    variables: dict
    source: str

    def fingerprint(self) -> str:
        """A content hash of the variables (part of the compile-cache key)."""
        h = hashlib.sha1()
        for p, x in traverse_util.flatten_dict(dict(self.variables)).items():
            h.update(path_name(p).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        return h.hexdigest()


def load_base(spec: Mapping) -> BaseModel:
    """Read the base model named by ``finetune.from`` (see the module docstring).

    Raises:
        ConfigError: the file is missing or unreadable.
    """
    spec = validate_finetune(spec)
    src = spec["from"]
    where = f"config key 'finetune.from': {src!r}"
    try:
        if isinstance(src, list) or src.endswith(".npz"):
            from tace_jax.models.reference import load_reference

            npz, js = src if isinstance(src, list) else (src, src[:-4] + ".json")
            for f in (npz, js):
                if not os.path.isfile(f):
                    raise ConfigError(f"{where}: {f} not found")
            config, stats, variables = load_reference(npz, js)
        elif src.endswith((".ckpt", ".pt", ".pth")):
            from tace_jax.models.torch_import import load_torch_checkpoint

            if not os.path.isfile(src):
                raise ConfigError(f"{where}: file not found")
            config, stats, variables = load_torch_checkpoint(src, spec["torch_config"])
        else:
            from tace_jax.inference import Potential

            if not os.path.exists(src):
                raise ConfigError(f"{where}: file not found")
            pot = Potential.load(src)
            config, stats, variables = pot.config, pot.statistics, pot.variables
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{where}: cannot read the base model: {e}") from e
    variables = jax.tree.map(np.asarray, jax.device_get(dict(variables)))
    return BaseModel(config, stats, variables, src if isinstance(src, str) else src[0])


def check_model_section(model: Mapping, base: TACEConfig) -> None:
    """Raise :class:`ConfigError` when a ``model`` key disagrees with the base model."""
    if not model:
        return
    try:
        merged = TACEConfig.from_dict({**base.to_dict(), **dict(model)})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {e}") from e
    if merged != base:
        bad = [k for k in model if getattr(merged, k, None) != getattr(base, k, None)]
        raise ConfigError(
            f"config key 'model': {bad or list(model)} differ from the fine-tuning base model; "
            "leave the model section empty when fine-tuning (the base model's config is used)"
        )


def freeze_labels(params: Mapping, patterns) -> dict:
    """``"frozen"`` for every leaf whose path a pattern matches, else ``"trainable"``.

    Raises:
        ConfigError: a pattern matches no parameter, or every parameter is frozen.
    """
    flat = traverse_util.flatten_dict(dict(params))
    frozen = set()
    for pat in patterns:
        rx = re.compile(pattern_regex(pat, FREEZE_ALIASES))
        hits = {p for p in flat if rx.search(path_name(p))}
        if not hits:
            names = ", ".join(sorted(path_name(p) for p in flat)[:8])
            raise ConfigError(
                f"config key 'finetune.freeze': {pat!r} matches no parameter (e.g. {names}, ...)"
            )
        frozen |= hits
    if frozen and len(frozen) == len(flat):
        raise ConfigError("config key 'finetune.freeze': every parameter would be frozen")
    return traverse_util.unflatten_dict({p: FROZEN if p in frozen else TRAINABLE for p in flat})


def count_parameters(params, labels) -> tuple[int, int]:
    """``(trainable, total)`` numbers of parameter entries under optimiser ``labels``."""
    sizes = jax.tree.map(lambda x: int(np.size(x)), params)
    trainable = sum(
        s
        for s, lab in zip(jax.tree.leaves(sizes), jax.tree.leaves(labels), strict=True)
        if lab == TRAINABLE
    )
    return trainable, sum(jax.tree.leaves(sizes))


def finetune_statistics(cfg, base: BaseModel, data, neighbor_cache=None) -> tuple[Statistics, dict]:
    """The statistics of the fine-tuned model and the raw dict written to ``statistics.json``.

    ``e0: base`` keeps the base statistics. ``e0: refit`` adds the minimum-norm least-squares
    ``ΔE0`` that fits ``E_ref − E_base`` on the training structures with energies (the base
    model's σ, μ and n̄ are kept: they are part of the function being fine-tuned).
    """
    spec = validate_finetune(cfg.finetune)
    zs = list(base.config.atomic_numbers)
    for s in (*data.train, *data.valid):
        extra = sorted(set(int(z) for z in np.unique(s.numbers)) - set(zs))
        if extra:
            raise ConfigError(
                f"{s.where}: elements {extra} are not in the fine-tuning base model ({zs})"
            )
    stats = base.statistics
    raw = {**stats.to_dict(), "atomic_numbers": zs, "e0_mode": spec["e0"]}
    raw["warnings"] = label_report(cfg, data)
    if spec["e0"] == "refit":
        c = base.config
        loader_kw = dict(
            cutoff=c.cutoff,
            atomic_numbers=c.atomic_numbers,
            dtype=cfg.dtype,
            neighbor_cache=neighbor_cache,
            inputs=c.input_names,
            input_limits=c.input_limits,
        )
        delta = _refit_e0(base, [s for s in data.train if s.energy is not None], loader_kw)
        e0 = np.asarray(stats.atomic_energies).copy()
        e0[0] += delta  # the new data's level (fine-tuning data have one level)
        stats = dataclasses.replace(stats, atomic_energies=e0)
        raw.update(stats.to_dict(), e0_delta=delta.tolist())
    return stats, raw


def _refit_e0(base: BaseModel, structures, loader_kw: Mapping) -> np.ndarray:
    from tace_jax.data import GraphLoader
    from tace_jax.models import TACE

    if not structures:
        raise ConfigError("config key 'finetune.e0': refit needs training energies")
    model = TACE(base.config, base.statistics)
    loader = GraphLoader(structures, batch_size=16, shuffle=False, **loader_kw)
    apply = jax.jit(model.apply)
    variables = jax.tree.map(lambda x: _cast(x, loader.dtype), base.variables)
    pred = []
    for idx in loader.plan(0):
        batch = loader.make_batch(idx)
        out = apply(variables, jax.tree.map(np.asarray, batch))
        pred.extend(np.asarray(out["energy"], np.float64)[np.asarray(batch.graph_mask)])
    zs = list(base.config.atomic_numbers)
    counts = np.asarray([[np.sum(s.numbers == z) for z in zs] for s in structures], float)
    resid = np.asarray([s.energy for s in structures], float) - np.asarray(pred)
    return np.linalg.lstsq(counts, resid, rcond=None)[0]


class FinetuneModel:
    """A model with ``TACE``'s ``init``/``apply`` interface that starts from a base model.

    ``init`` returns the base variables (and fresh LoRA adapters: parameters
    ``{"base", "lora"}``); ``apply`` merges the adapters (:func:`~tace_jax.train.lora.merge_lora`)
    before calling the TACE module, and also accepts plain TACE variables (an exported model).

    Attributes:
        model: the TACE module.
        base: the :class:`BaseModel`.
        lora: ``{"rank", "alpha", "targets"}`` or None.
        lora_paths: the adapted parameter paths.
        labels: the optimiser labels (``"trainable"``/``"frozen"``) of the parameters.
        cache_tag: a hashable key of what ``init``/``apply`` do (for compile caches).
    """

    def __init__(self, model, base: BaseModel, freeze=(), lora: Mapping | None = None, seed=0):
        self.model, self.base, self.lora, self.seed = model, base, lora, seed
        params = base.variables["params"]
        if lora is None:
            self.lora_paths = []
            self.labels = freeze_labels(params, freeze)
        else:
            try:
                self.lora_paths = lora_target_paths(params, lora["targets"])
            except ValueError as e:
                raise ConfigError(str(e)) from None
            shapes = init_lora(jax.random.key(0), params, self.lora_paths, lora["rank"], "float32")
            self.labels = {
                "base": jax.tree.map(lambda _: FROZEN, params),
                "lora": jax.tree.map(lambda _: TRAINABLE, shapes),
            }
        self.cache_tag = (
            "finetune",
            base.fingerprint(),
            tuple(freeze),
            None if lora is None else (lora["rank"], lora["alpha"], tuple(self.lora_paths)),
        )

    @property
    def scale(self) -> float:
        return self.lora["alpha"] / self.lora["rank"]

    def init(self, rng, graph, *args, **kwargs) -> dict:
        """The base variables (float dtype of ``graph``), plus zero-update adapters."""
        dtype = graph.positions.dtype
        variables = jax.tree.map(lambda x: _cast(x, dtype), self.base.variables)
        if self.lora is None:
            return variables
        adapters = init_lora(rng, variables["params"], self.lora_paths, self.lora["rank"], dtype)
        return {**variables, "params": {"base": variables["params"], "lora": adapters}}

    def merged(self, variables: Mapping) -> dict:
        """Plain TACE variables (adapters merged; plain variables unchanged)."""
        params = variables["params"]
        if not is_lora_params(params):
            return dict(variables)
        return {**variables, "params": merge_lora(params["base"], params["lora"], self.scale)}

    def apply(self, variables, graph, *args, **kwargs):
        return self.model.apply(self.merged(variables), graph, *args, **kwargs)

    def export_variables(self, variables, path) -> dict:
        """What the loop exports: merged variables; writes the adapters alone next to
        ``path`` (``lora_adapters.npz``) when there are any."""
        variables = jax.device_get(variables)
        if self.lora is not None and is_lora_params(variables["params"]):
            out = os.path.join(os.path.dirname(os.fspath(path)) or ".", "lora_adapters.npz")
            lora, stats = variables["params"]["lora"], getattr(self.model, "statistics", None)
            save_adapters(out, lora, self.lora["rank"], self.lora["alpha"], stats)
        return self.merged(variables)

    def num_parameters(self, dtype="float32") -> tuple[int, int]:
        """``(trainable, total)`` numbers of parameter entries."""
        shapes = jax.eval_shape(
            lambda: self.init(jax.random.key(0), _Dummy(np.zeros((1, 3), dtype)))
        )
        return count_parameters(shapes["params"], self.labels)


def _cast(x, dtype):
    return np.asarray(x, dtype) if np.issubdtype(np.asarray(x).dtype, np.floating) else x


@dataclasses.dataclass
class _Dummy:
    positions: np.ndarray


def prepare_finetune(cfg, base: BaseModel, model):
    """``(FinetuneModel, optimiser, report)`` of a fine-tuning run.

    The optimiser is :func:`~tace_jax.train.optimizer.make_optimizer` with the wrapper's
    labels (frozen parameters: ``set_to_zero``, no state). ``report`` holds the trainable and
    total parameter counts (also printed).
    """
    spec = validate_finetune(cfg.finetune)
    wrapper = FinetuneModel(model, base, spec["freeze"], spec["lora"], cfg.seed)
    optimizer = make_optimizer(
        cfg.lr, cfg.weight_decay, cfg.amsgrad, cfg.clip, dtype=cfg.dtype, labels=wrapper.labels
    )
    trainable, total = wrapper.num_parameters(cfg.dtype)
    report = {
        "from": base.source,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "freeze": spec["freeze"],
        "lora": spec["lora"],
        "lora_paths": [path_name(p) for p in wrapper.lora_paths],
        "e0": spec["e0"],
    }
    mode = "LoRA" if spec["lora"] else ("frozen layers" if spec["freeze"] else "full")
    print(
        f"fine-tuning ({mode}) from {base.source}: {trainable} trainable of {total} parameters",
        flush=True,
    )
    return wrapper, optimizer, report
