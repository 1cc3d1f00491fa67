"""The versioned model file: config, statistics and variables in one checksummed msgpack file.

``write_model`` writes atomically (temporary file, ``fsync``, rename), so an interrupted save
never leaves a truncated file under the final name. ``read_model`` checks the header, the format
version, the SHA-256 of the variables and that the variable shapes match the stored config, and
raises :class:`PotentialFormatError` (naming the path) for anything else.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile

import flax.serialization
import jax
import numpy as np

from tace_jax.data.graph import single_atom_graph

from .config import TACEConfig
from .statistics import Statistics
from .tace import TACE

__all__ = [
    "FORMAT_VERSION",
    "PotentialFormatError",
    "write_model",
    "read_model",
    "check_variables",
]

#: Version of the file written by :func:`write_model`.
FORMAT_VERSION = 1
_FORMAT = "tace_jax.Potential"


class PotentialFormatError(ValueError):
    """A file is not a readable model artefact (corrupt, wrong kind or version)."""


def write_model(
    path, config: TACEConfig, statistics: Statistics, variables, dtype: str, version: str
) -> None:
    """Write one model file (variables stored as given, in ``dtype``)."""
    blob = flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, variables))
    payload = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "tace_jax_version": version,
        "config": json.dumps(config.to_dict()),
        "statistics": json.dumps(statistics.to_dict()),
        "dtype": str(dtype),
        "variables_sha256": hashlib.sha256(blob).hexdigest(),
        "variables": blob,
    }
    data = flax.serialization.msgpack_serialize(payload)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".tace")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _directory_hint(path: str) -> str:
    for name in ("model", os.path.join("..", "model")):
        cand = os.path.normpath(os.path.join(path, name))
        if os.path.isfile(cand):
            return f"; did you mean {cand!r}?"
    return "; a training run writes its model to <output_dir>/model"


def read_model(path) -> tuple[TACEConfig, Statistics, dict, str]:
    """Read a file written by :func:`write_model`: ``(config, statistics, variables, dtype)``.

    Raises:
        FileNotFoundError: no such file.
        PotentialFormatError: a directory, not a model file, corrupt, or an unknown version.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise PotentialFormatError(
            f"{path}: is a directory, not a model file{_directory_hint(path)}"
        )
    with open(path, "rb") as f:
        data = f.read()
    try:
        payload = flax.serialization.msgpack_restore(data)
    except Exception as err:
        raise PotentialFormatError(f"{path}: not a readable tace_jax model file ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise PotentialFormatError(f"{path}: not a tace_jax model file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise PotentialFormatError(
            f"{path}: format_version {version!r} is not supported (this tace_jax reads "
            f"version {FORMAT_VERSION}; written by tace_jax {payload.get('tace_jax_version')})"
        )
    try:
        blob = payload["variables"]
        if hashlib.sha256(blob).hexdigest() != payload["variables_sha256"]:
            raise PotentialFormatError(f"{path}: checksum mismatch, the variables are corrupt")
        variables = flax.serialization.msgpack_restore(blob)
        config = TACEConfig.from_dict(json.loads(payload["config"]))
        statistics = Statistics.from_dict(json.loads(payload["statistics"]))
        stored = payload["dtype"]
    except PotentialFormatError:
        raise
    except Exception as err:
        raise PotentialFormatError(f"{path}: corrupt model file ({err!r})") from err
    check_variables(variables, config, statistics, path)
    return config, statistics, variables, stored


def check_variables(variables, config: TACEConfig, statistics: Statistics, where: str) -> None:
    """Raise :class:`PotentialFormatError` unless ``variables`` have the shapes ``config``
    implies."""
    model = TACE(config, statistics)
    graph = single_atom_graph(config.atomic_numbers[0], inputs=config.input_names)
    template = jax.eval_shape(functools.partial(model.init, jax.random.key(0)), graph)
    flat_t = {
        jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(template)
    }
    flat_v = {
        jax.tree_util.keystr(p): np.shape(x)
        for p, x in jax.tree_util.tree_leaves_with_path(variables)
    }
    if flat_t != flat_v:
        missing = sorted(set(flat_t) - set(flat_v))[:5]
        extra = sorted(set(flat_v) - set(flat_t))[:5]
        shapes = [k for k in set(flat_t) & set(flat_v) if flat_t[k] != flat_v[k]][:5]
        raise PotentialFormatError(
            f"{where}: variables do not match the stored config (missing {missing}, unexpected "
            f"{extra}, wrong shape {shapes})"
        )
