"""Import a reference PyTorch TACE v0.1.0 model from a fixture (``npz`` + ``json``).

Every ``w/<torch name>`` parameter maps 1:1 through :mod:`tace_jax.models.reference_names`
(weights are stored unscaled on both sides; the forward-time ``α`` factors are applied by the
modules; only the plain-torch UIE layers are transposed). The ``b/...`` buffers that carry
statistics (E0, σ, μ, n̄) become :class:`~tace_jax.models.Statistics`; the remaining buffers
are constants the model recomputes (checked for the ones that matter).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .config import TACEConfig
from .reference_names import torch_to_path
from .statistics import Statistics

__all__ = ["load_reference", "map_reference_weights", "config_from_reference"]

_P = "readout_fn."
_D = _P + "descriptor."


def config_from_reference(meta: Mapping[str, Any]) -> TACEConfig:
    """``TACEConfig`` from a fixture json dict (``model_config``, ``atomic_numbers``, targets)."""
    return TACEConfig.from_reference(
        meta["model_config"], meta["atomic_numbers"], meta.get("target_property", ("energy",))
    )


def map_reference_weights(
    weights: Mapping[str, np.ndarray], cfg: TACEConfig, template: Mapping[str, Any]
) -> dict[str, Any]:
    """Torch ``state_dict`` parameters → Flax ``params`` tree shaped like ``template``.

    Raises:
        ValueError: for unknown names, shape mismatches, parameters left over on either side.
    """
    flat_t = {
        tuple(getattr(k, "key", str(k)) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]
    }
    out: dict[tuple[str, ...], np.ndarray] = {}
    errors = []
    for name, arr in weights.items():
        try:
            path, transpose = torch_to_path(name, cfg)
        except KeyError as e:
            errors.append(str(e))
            continue
        arr = np.asarray(arr).T if transpose else arr
        if path not in flat_t:
            errors.append(f"{name} -> {'/'.join(path)}: not a parameter of the model")
            continue
        if tuple(flat_t[path].shape) != tuple(np.shape(arr)):
            errors.append(
                f"{name} -> {'/'.join(path)}: shape {np.shape(arr)} != {tuple(flat_t[path].shape)}"
            )
            continue
        if path in out:
            errors.append(f"{name} -> {'/'.join(path)}: mapped twice")
        out[path] = np.asarray(arr)
    missing = sorted("/".join(p) for p in set(flat_t) - set(out))
    if missing:
        errors.append(f"model parameters without a reference weight: {missing}")
    if errors:
        raise ValueError("reference weight import failed:\n  " + "\n  ".join(errors))
    tree: dict[str, Any] = {}
    for path, arr in out.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = arr
    return tree


def _equal_at_some_precision(a, b) -> bool:
    """``a == b`` exactly in float64, or exactly once both are rounded to float32."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.array_equal(a, b) or np.array_equal(a.astype(np.float32), b.astype(np.float32))


def _float32_close(a, b) -> bool:
    """``a`` is a float32 array (a float32 reference model) equal to ``b`` to float32 round-off."""
    a = np.asarray(a, np.float64)
    is32 = np.array_equal(a, a.astype(np.float32))
    return is32 and np.allclose(a, b, rtol=4 * np.finfo(np.float32).eps, atol=0)


def _check_buffers(buffers: Mapping[str, np.ndarray], cfg: TACEConfig) -> None:
    """Sanity-check the constant buffers against what the model recomputes."""
    from tace_jax.ops import COVALENT_RADII

    zs = buffers.get(_P + "atomic_numbers")
    if zs is not None and tuple(int(z) for z in zs) != cfg.atomic_numbers:
        raise ValueError(f"buffer atomic_numbers {zs} != config {cfg.atomic_numbers}")
    cut = buffers.get(_P + "cutoff")
    if cut is not None and abs(float(cut) - cfg.cutoff) > 1e-12:
        raise ValueError(f"buffer cutoff {cut} != config {cfg.cutoff}")
    rad = buffers.get(_P + "zbl.covalent_radii")
    # exact, in float64 or in float32 (a float32 reference model stores float32 radii)
    if rad is not None and not _equal_at_some_precision(rad, COVALENT_RADII[: len(rad)]):
        raise ValueError("ZBL covalent radii differ from ase.data.covalent_radii")
    bw = buffers.get(_D + "radial_embedding.radial_fn.bessel_weights")
    if bw is not None:
        want = np.arange(1, cfg.num_radial_basis + 1) * np.pi / cfg.cutoff
        if not (np.allclose(bw, want, rtol=1e-14, atol=0) or _float32_close(bw, want)):
            raise ValueError("Bessel weights differ from nπ/r_c")
    one_e = buffers.get(_P + "direct_polarizability_basis_change.one_e")
    if one_e is not None and not np.allclose(one_e, np.eye(3) / np.sqrt(3.0), rtol=1e-14, atol=0):
        raise ValueError("direct polarizability basis one_e differs from δ/√3")


def load_reference(
    npz_path: str | os.PathLike, json_path: str | os.PathLike, param_dtype=jnp.float64
) -> tuple[TACEConfig, Statistics, dict[str, Any]]:
    """Load a reference fixture.

    Args:
        npz_path: the fixture npz (``w/`` parameters, ``b/`` buffers).
        json_path: the fixture json (``model_config``, ``atomic_numbers``, ``statistics``).
        param_dtype: dtype of the returned parameters (float64 keeps them exact; it needs
            ``jax_enable_x64``, otherwise they are numpy float64 arrays cast at use).

    Returns:
        ``(config, statistics, variables)`` with ``variables = {"params": ...}`` (numpy arrays).
    """
    from tace_jax.data.graph import single_atom_graph

    from .tace import TACE

    with open(json_path) as f:
        meta = json.load(f)
    cfg = config_from_reference(meta)
    with np.load(npz_path) as z:
        weights = {k[2:]: z[k] for k in z.files if k.startswith("w/")}
        buffers = {k[2:]: z[k] for k in z.files if k.startswith("b/")}
    _check_buffers(buffers, cfg)
    stats = Statistics.from_buffers(buffers, _P)
    shift_type = (meta["model_config"].get("scale_shift") or {}).get("shift_type")
    stats_json = Statistics.from_reference(meta["statistics"], cfg.atomic_numbers, shift_type)
    for name in ("atomic_energies", "scale", "shift"):
        if not np.allclose(getattr(stats_json, name), getattr(stats, name), rtol=1e-12, atol=0):
            raise ValueError(f"statistics ({name}) in the json and the npz buffers disagree")
    dummy = single_atom_graph(cfg.atomic_numbers[0], inputs=cfg.input_names)
    model = TACE(cfg, stats, param_dtype=jnp.float32)
    template = jax.eval_shape(model.init, jax.random.key(0), dummy)["params"]
    params = map_reference_weights(weights, cfg, template)
    params = jax.tree.map(lambda a: np.asarray(a, dtype=np.dtype(param_dtype)), params)
    return cfg, stats, {"params": params}
