"""Convert real PyTorch TACE v0.1.0 checkpoints into the reference ``npz`` + ``json`` pair.

Needs the optional ``torch`` extra (``pip install tace-jax[torch]``); torch is imported only
inside :func:`read_torch_checkpoint`. The reference package ``tace`` itself is *not* needed:
classes of it that a pickle refers to are replaced by inert stand-ins when it is missing.

Checkpoint layouts understood (all written by ``tace`` 0.1.0):

* Lightning ``.ckpt``: ``{"state_dict": {"model.<name>": tensor}, "hyper_parameters": {"cfg":
  <training config with cfg["model"]["config"]>, "statistics": [Statistics, ...]},
  "ema_state_dict": {"shadow_params": [...]}}``. As in ``tace``, the EMA weights are used when
  present (``use_ema``) unless the config enables the ``swa`` callback.
* ``tace-export --backend state_dict`` (``*-state.pt``): ``{"state_dict", "cfg",
  "target_property", "embedding_property", "statistics"}``.
* ``tace-export --backend whole_model`` (``*-whole.pt``): a pickled ``WrapModelV1`` module.
* A bare ``state_dict`` (``torch.save(model.state_dict())``): needs ``config=``.

The output is the fixture format of ``load_reference``: ``w/<name>`` parameters and ``b/<name>``
buffers (names start with ``readout_fn.``) plus a json with ``model_config``,
``atomic_numbers``, ``statistics`` and ``target_property``. The json statistics are rebuilt from
the statistics buffers (what the torch model actually uses); the checkpoint's own statistics
are kept under ``statistics_checkpoint``.
"""

from __future__ import annotations

import json
import os
import pickle
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

from .statistics import Statistics

__all__ = [
    "TORCH_HINT",
    "checkpoint_to_arrays",
    "collapse_per_layer",
    "convert_torch_checkpoint",
    "load_torch_checkpoint",
    "normalize_state_dict",
    "read_torch_checkpoint",
    "split_state_dict",
    "write_reference",
]

TORCH_HINT = "reading PyTorch checkpoints needs torch: pip install tace-jax[torch]"
_P = "readout_fn."
_PREFIXES = ("model.", "module.", "_orig_mod.")
# parameter names end in these (UEE: element_weights, channel_weights); buffers never do
_PARAM_SUFFIXES = (".weight", ".weights", ".bias", ".element_weights", ".channel_weights")


def _norm_name(name: str) -> str:
    key, changed = name, True
    while changed and not key.startswith(_P):
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key if key.startswith(_P) else _P + key


def normalize_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Strip Lightning / DDP / compile prefixes so that every name starts with ``readout_fn.``.

    A bare ``TACEV1`` state dict (names starting with ``descriptor.``) gets ``readout_fn.``.

    Raises:
        ValueError: a name that does not belong to a ``WrapModelV1``/``TACEV1`` model.
    """
    out: dict[str, Any] = {}
    for name, value in state_dict.items():
        key = _norm_name(name)
        if key in out:
            raise ValueError(f"state dict: {name!r} collides with another entry as {key!r}")
        out[key] = value
    if not any(k.startswith(_P + "descriptor.") for k in out):
        raise ValueError(
            "state dict has no 'readout_fn.descriptor.*' entries: not a TACE v0.1.0 model "
            f"(first names: {list(state_dict)[:5]})"
        )
    return out


def split_state_dict(
    state_dict: Mapping[str, Any], param_names: set[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a normalized state dict into ``(parameters, buffers)``.

    With ``param_names`` (from ``named_parameters()``) the split is exact; otherwise every
    name ending in one of ``_PARAM_SUFFIXES`` (``.weight``, ``.weights``, ``.bias`` and the
    UEE ``.element_weights``/``.channel_weights``) is a parameter (true for ``TACEV1``).
    """
    if param_names is None:
        is_param = lambda k: k.endswith(_PARAM_SUFFIXES)
    else:
        is_param = lambda k: k in param_names
    weights = {k: v for k, v in state_dict.items() if is_param(k)}
    buffers = {k: v for k, v in state_dict.items() if not is_param(k)}
    return weights, buffers


def _plain(obj: Any) -> Any:
    """json-able copy of configs/statistics (DictConfig, Statistics objects, tensors, numpy)."""
    if hasattr(obj, "_content") and type(obj).__name__ in ("DictConfig", "ListConfig"):
        try:
            from omegaconf import OmegaConf

            return _plain(OmegaConf.to_container(obj, resolve=True))
        except Exception:  # noqa: BLE001 - fall through to the generic paths
            pass
    if isinstance(obj, Mapping):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [_plain(v) for v in obj]
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor
        return _plain(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if hasattr(obj, "__dict__"):  # tace Statistics (or its stand-in)
        return {k: _plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return str(obj)


def _module_tree(module: Any, prefix: str = "") -> tuple[dict[str, Any], set[str]]:
    """State dict and parameter names of a (possibly stand-in) pickled ``nn.Module``."""
    d = vars(module)
    sd: dict[str, Any] = {}
    params: set[str] = set()
    for k, v in (d.get("_parameters") or {}).items():
        if v is not None:
            sd[prefix + k] = v
            params.add(prefix + k)
    skip = d.get("_non_persistent_buffers_set") or set()
    for k, v in (d.get("_buffers") or {}).items():
        if v is not None and k not in skip:
            sd[prefix + k] = v
    for k, child in (d.get("_modules") or {}).items():
        if child is not None:
            csd, cparams = _module_tree(child, prefix + k + ".")
            sd.update(csd)
            params |= cparams
    return sd, params


def _read_config_file(config: str | os.PathLike | Mapping) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return _plain(config)
    path = os.fspath(config)
    with open(path) as f:
        if path.endswith(".json"):
            return json.load(f)
        import yaml

        return yaml.safe_load(f)


def _unpack_config(cfg: Mapping[str, Any]) -> tuple[dict, dict]:
    """``(model_config, extras)`` from a training config, a model config or a fixture json."""
    cfg = _plain(cfg)
    if "model_config" in cfg:  # fixture-style json
        extras = {
            k: cfg[k] for k in ("atomic_numbers", "statistics", "target_property") if k in cfg
        }
        return cfg["model_config"], extras
    if "model" in cfg and isinstance(cfg["model"], Mapping) and "config" in cfg["model"]:
        return cfg["model"]["config"], {}
    return cfg, {}


_PER_LAYER = (
    ("prod", "correlation"),
    ("prod", "l1l2"),
    ("prod", "l3l1"),
    ("inter", "l1l2"),
    ("radial_mlp", "hidden"),
)


def _is_layer_entry(key: str, v: Any) -> bool:
    if key == "correlation":
        return isinstance(v, int)
    if key == "hidden":
        return isinstance(v, list)
    return (
        v is None
        or isinstance(v, str)
        or (isinstance(v, list) and all(isinstance(x, list) for x in v))
    )


def collapse_per_layer(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """Undo tace's in-place per-layer expansion of a model config.

    ``TACEV1`` rewrites its ``model_config`` (the copy saved in ``-state.pt`` / ``-whole.pt``)
    with one entry per layer for ``prod.correlation``, ``prod.l1l2``, ``prod.l3l1``,
    ``inter.l1l2`` and ``radial_mlp.hidden``. Equal per-layer entries collapse back to the
    single yaml value.

    Raises:
        NotImplementedError: per-layer values that differ (not supported by this port).
    """
    mc = json.loads(json.dumps(_plain(model_config)))
    n = int(mc.get("num_layers", 2))
    for sec, key in _PER_LAYER:
        v = (mc.get(sec) or {}).get(key)
        if isinstance(v, list) and len(v) == n and all(_is_layer_entry(key, x) for x in v):
            if any(x != v[0] for x in v):
                raise NotImplementedError(f"per-layer {sec}.{key} = {v} is not supported")
            mc[sec][key] = v[0]
    return mc


def _target_property(cfg: Mapping | None) -> list[str] | None:
    """Targets from a training config via ``tace`` (if installed), else ``None``."""
    if not cfg or not isinstance(cfg.get("loss"), Mapping):
        return None
    if cfg["loss"].get("loss_property"):
        return list(cfg["loss"]["loss_property"])
    try:
        from tace.dataset.quantity import get_target_property

        return list(get_target_property(cfg))
    except Exception:  # noqa: BLE001 - tace missing or config it cannot read
        return None


def checkpoint_to_arrays(
    obj: Any,
    config: str | os.PathLike | Mapping | None = None,
    use_ema: bool = True,
    to_numpy=np.asarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Parameters, buffers and json metadata from a loaded checkpoint object.

    Args:
        obj: what ``torch.load`` returned (dict layouts or a module, see the module docstring).
        config: model config (yaml/json path or dict) when ``obj`` carries none; it wins over
            the checkpoint's own config when given.
        use_ema: use the EMA shadow weights of a Lightning checkpoint when present.
        to_numpy: tensor → numpy conversion.

    Returns:
        ``(weights, buffers, meta)`` with fixture names (no ``w/``/``b/`` prefix).

    Raises:
        ValueError: unknown layout, or no model config anywhere.
    """
    model_cfg = stats = targets = embedding = None
    param_names = None
    ema = None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        sd = obj["state_dict"]
        hp = obj.get("hyper_parameters") or {}
        full = _plain(hp.get("cfg")) if hp.get("cfg") is not None else None
        raw_cfg = obj.get("cfg", full)
        if raw_cfg is not None:
            model_cfg, _ = _unpack_config(raw_cfg)
        stats = obj.get("statistics", hp.get("statistics"))
        targets = obj.get("target_property", hp.get("target_property"))
        targets = targets or _target_property(full)
        embedding = obj.get("embedding_property", hp.get("embedding_property"))
        swa = "swa" in ((full or {}).get("callbacks") or {})
        if use_ema and not swa and isinstance(obj.get("ema_state_dict"), Mapping):
            ema = obj["ema_state_dict"].get("shadow_params")
    elif isinstance(obj, Mapping):
        sd = obj
    elif hasattr(obj, "_modules") or "_modules" in getattr(obj, "__dict__", {}):
        sd, param_names = _module_tree(obj)
        inner = (vars(obj).get("_modules") or {}).get("readout_fn", obj)
        attrs = vars(inner)
        if attrs.get("model_config") is not None:
            model_cfg, _ = _unpack_config(attrs["model_config"])
        stats = attrs.get("statistics")
        targets = attrs.get("target_property")
        embedding = attrs.get("embedding_property")
    else:
        raise ValueError(f"unrecognised checkpoint content of type {type(obj).__name__}")

    sd = {k: v for k, v in sd.items() if not k.endswith("._extra_state")}
    sd = normalize_state_dict(sd)
    if param_names is not None:
        param_names = {_norm_name(n) for n in param_names}
    weights, buffers = split_state_dict(sd, param_names)
    if ema is not None:
        if len(ema) != len(weights):
            raise ValueError(
                f"EMA has {len(ema)} tensors, the state dict {len(weights)} parameters"
            )
        weights = dict(zip(weights, ema))
    weights = {k: np.asarray(to_numpy(v)) for k, v in weights.items()}
    buffers = {k: np.asarray(to_numpy(v)) for k, v in buffers.items()}

    extras: dict[str, Any] = {}
    if config is not None:
        model_cfg, extras = _unpack_config(_read_config_file(config))
    if model_cfg is None:
        raise ValueError(
            "the checkpoint holds no model config (a bare state_dict?): pass config= / --config "
            "(the training yaml, the model 'config' section, or a fixture-style json)"
        )
    if _P + "atomic_numbers" in buffers:
        zs = [int(z) for z in buffers[_P + "atomic_numbers"]]
    elif extras.get("atomic_numbers"):
        zs = [int(z) for z in extras["atomic_numbers"]]
    else:
        raise ValueError("cannot find the atomic numbers (buffer readout_fn.atomic_numbers)")
    meta = {
        "variant": "converted",
        "package": "tace==0.1.0",
        "dtype": "float64",
        "atomic_numbers": zs,
        "target_property": list(targets or extras.get("target_property") or ["energy", "forces"]),
        "embedding_property": list(embedding or []),
        "statistics": Statistics.from_buffers(buffers, _P).to_reference(zs),
        "statistics_checkpoint": _plain(stats if stats is not None else extras.get("statistics")),
        "model_config": collapse_per_layer(model_cfg),
        "used_ema": ema is not None,
    }
    return weights, buffers, meta


class _Stand:
    """Inert stand-in for a class of a package that is not installed (keeps its state)."""

    def __init__(self, *args, **kwargs):
        self.__dict__.update(kwargs)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, Mapping):
            self.__dict__.update(state)


def _lenient_pickle_module():
    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                return type(name, (_Stand,), {"__module__": module})

    mod = types.ModuleType("tace_jax_lenient_pickle")
    mod.__dict__.update({k: getattr(pickle, k) for k in ("load", "loads", "dump", "dumps")})
    mod.Unpickler = Unpickler
    return mod


def read_torch_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load`` a trusted checkpoint on CPU (``weights_only=False``).

    Raises:
        ImportError: torch is not installed (message: ``pip install tace-jax[torch]``).
        FileNotFoundError: no such file.
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError(TORCH_HINT) from e
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file {path!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError):  # pickled tace classes, tace not installed
        return torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_lenient_pickle_module()
        )


def _tensor_to_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu()
        if t.is_floating_point():
            t = t.double()
        return t.numpy()
    return np.asarray(t)


def write_reference(
    weights: Mapping[str, np.ndarray],
    buffers: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    out_npz: str | os.PathLike,
    out_json: str | os.PathLike,
) -> None:
    """Write ``w/``+``b/`` arrays and the json metadata (creating parent folders)."""
    for p in (out_npz, out_json):
        parent = os.path.dirname(os.path.abspath(os.fspath(p)))
        os.makedirs(parent, exist_ok=True)
    arrays = {"w/" + k: np.asarray(v) for k, v in weights.items()}
    arrays.update({"b/" + k: np.asarray(v) for k, v in buffers.items()})
    with open(out_npz, "wb") as f:
        np.savez(f, **arrays)
    with open(out_json, "w") as f:
        json.dump(meta, f, indent=1)


def convert_torch_checkpoint(
    path: str | os.PathLike,
    out_npz: str | os.PathLike,
    out_json: str | os.PathLike | None = None,
    config: str | os.PathLike | Mapping | None = None,
    use_ema: bool = True,
) -> tuple[str, str]:
    """Convert a ``tace`` 0.1.0 ``.ckpt``/``.pt`` file into ``load_reference``'s npz + json.

    Args:
        path: the checkpoint.
        out_npz: output npz (``w/``, ``b/`` arrays, float64).
        out_json: output json; default: ``out_npz`` with ``.json``.
        config: model config for checkpoints without one (see :func:`checkpoint_to_arrays`).
        use_ema: prefer EMA weights of a Lightning checkpoint.

    Returns:
        ``(npz_path, json_path)``.
    """
    obj = read_torch_checkpoint(path)
    try:
        weights, buffers, meta = checkpoint_to_arrays(obj, config, use_ema, _tensor_to_numpy)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}") from e
    meta["source"] = os.path.abspath(os.fspath(path))
    out_npz = os.fspath(out_npz)
    if out_json is None:
        out_json = (out_npz[:-4] if out_npz.endswith(".npz") else out_npz) + ".json"
    write_reference(weights, buffers, meta, out_npz, out_json)
    return out_npz, os.fspath(out_json)


def load_torch_checkpoint(
    path: str | os.PathLike,
    config: str | os.PathLike | Mapping | None = None,
    use_ema: bool = True,
):
    """``(config, statistics, variables)`` straight from a ``tace`` 0.1.0 checkpoint.

    The same as :func:`convert_torch_checkpoint` followed by
    :func:`~tace_jax.models.load_reference`; wrap the result in
    ``tace_jax.inference.Potential(*result, dtype=...)`` for prediction.
    """
    import tempfile

    from .reference import load_reference

    with tempfile.TemporaryDirectory() as tmp:
        npz, js = convert_torch_checkpoint(
            path, os.path.join(tmp, "model.npz"), config=config, use_ema=use_ema
        )
        return load_reference(npz, js)
