"""Reading training configs: YAML (duplicate keys rejected), ``key=value`` overrides, schema.

Split from :mod:`tace_jax.train.config` (which defines :class:`TrainConfig` and its validation
and re-exports every public name here). Options follow ``docs/theory.md`` §5.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from tace_jax.models import TACEConfig

from .config import ConfigError, TrainConfig, config_from_dict

__all__ = ["apply_overrides", "load_config", "read_yaml", "train_config_schema"]


def _parse_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML ``SafeLoader`` that rejects a key repeated in one mapping."""


def _unique_mapping(loader: _UniqueKeyLoader, node, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the base constructor reports it
            continue
        if first is not None:
            raise ConfigError(f"duplicate key {key!r} at lines {first} and {line}")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | Path):
    """Parse a YAML file; a duplicated key raises :class:`ConfigError` naming both lines."""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: config file not found")
    text = Path(path).read_text()
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e


def apply_overrides(d: dict, overrides) -> dict:
    """Apply ``key=value`` strings (values parsed as YAML; dotted keys go into nested maps)."""
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a mapping")
            node = node[p]
        node[parts[-1]] = _parse_value(text)
    return d


def load_config(path: str | Path | None = None, overrides=(), **updates) -> TrainConfig:
    """Read a YAML config (or start from defaults), apply overrides, validate.

    Args:
        path: YAML file; None starts from defaults.
        overrides: ``["key=value", "model.key=value", ...]``.
        **updates: further keys set directly (applied last).

    Raises:
        ConfigError: naming the file and the offending key.
    """
    base: dict = {}
    if path is not None:
        base = read_yaml(path) or {}
        if not isinstance(base, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    overrides = list(overrides or ())
    for item in overrides:
        try:
            apply_overrides({}, [item])
        except ConfigError as e:
            raise ConfigError(_named(item, e)) from None
    d = {**apply_overrides(base, overrides), **updates}
    try:
        return config_from_dict(d)
    except ConfigError as e:
        culprit = _blame_override({**base, **updates}, overrides, str(e))
        if culprit is not None:
            raise ConfigError(_named(culprit, e)) from None
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def _named(item: str, e: ConfigError) -> str:
    text = str(e)
    return text if text.startswith(f"override {item!r}") else f"override {item!r}: {text}"


def _blame_override(base: dict, overrides: list[str], error: str) -> str | None:
    """The override behind ``error`` (None: the file is to blame).

    An override whose key the error names; else, when the file alone is valid, the first
    override after which the config is invalid.
    """
    for item in overrides:
        if repr(item.split("=", 1)[0].strip().split(".")[-1]) in error:
            return item
    if overrides and _valid(base):
        d = base
        for item in overrides:
            d = apply_overrides(d, [item])
            if not _valid(d):
                return item
    return None


def _valid(d: dict) -> bool:
    try:
        config_from_dict(d)
    except ConfigError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# JSON schema
# ---------------------------------------------------------------------------------------------


def _json_type(tp) -> dict:
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if origin in (Union, types.UnionType):
        args = [_json_type(a) for a in typing.get_args(tp)]
        return {"anyOf": args}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    table = {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        dict: "object",
        list: "array",
    }
    return {"type": table.get(tp, "string")}


def _model_schema() -> dict:
    props = {}
    hints = typing.get_type_hints(TACEConfig)
    for f in dataclasses.fields(TACEConfig):
        entry = _json_type(hints.get(f.name, Any))
        if f.default is not dataclasses.MISSING:
            entry["default"] = _jsonable(f.default)
        props[f.name] = entry
    return {
        "type": "object",
        "description": "TACEConfig fields",
        "properties": props,
        "additionalProperties": False,
    }


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool, type(None), list, dict)):
        return v
    return str(v)


def train_config_schema() -> dict:
    """JSON schema (draft 2020-12) of the training config, with defaults and descriptions."""
    hints = typing.get_type_hints(TrainConfig)
    props = {}
    for f in dataclasses.fields(TrainConfig):
        entry = _json_type(hints[f.name])
        entry["description"] = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        entry["default"] = _jsonable(default)
        for k in ("minimum", "maximum", "exclusiveMinimum"):
            if k in f.metadata:
                entry[k] = f.metadata[k]
        props[f.name] = entry
    props["model"] = {**_model_schema(), "default": {}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "tace-jax training config",
        "type": "object",
        "properties": props,
        # exactly one data source: a file, per-level files or preprocessed shards
        "oneOf": [{"required": [k]} for k in ("train_file", "train_files", "train_dir")],
        "additionalProperties": False,
    }
