"""Tiny model and training configurations shared by the tests (fast to compile and train).

The model is the smallest TACE that still has every layer of docs/theory.md §2: one
interaction, correlation order 2, 4 channels, rank-1 node and edge tensors.
"""

from __future__ import annotations

import copy

__all__ = ["TINY_MODEL", "tiny_model", "tiny_tace_config", "tiny_train_dict"]

#: Training-config ``model`` section of the tiny model (JSON/YAML types).
TINY_MODEL = {
    "cutoff": 4.0,
    "num_layers": 1,
    "correlation": 2,
    "num_channel": 4,
    "lmax_node": 1,
    "lmax_edge": 1,
    "radial_hidden": [8],
    "readout_hidden": [4],
    "zbl": False,
}


def tiny_model(**overrides) -> dict:
    """A fresh copy of :data:`TINY_MODEL` with ``overrides`` applied."""
    out = copy.deepcopy(TINY_MODEL)
    out.update(overrides)
    return out


def tiny_tace_config(atomic_numbers, **overrides):
    """The tiny :class:`~tace_jax.models.TACEConfig` for ``atomic_numbers``."""
    from tace_jax.models import TACEConfig

    d = tiny_model(**overrides)
    for k in ("radial_hidden", "readout_hidden"):
        d[k] = tuple(d[k])
    return TACEConfig(atomic_numbers=tuple(atomic_numbers), **d)


def tiny_train_dict(output_dir, **overrides) -> dict:
    """A training config (dict) of the tiny model on 24 bundled rMD17 ethanol frames:
    18 train / 6 validation, 2 epochs of batch 3, no progress bar."""
    from tace_jax.data import bundled_dataset_path

    d = {
        "train_file": str(bundled_dataset_path("rmd17_ethanol_train")),
        "data_options": {"index": "0:24"},
        "valid_fraction": 0.25,
        "model": tiny_model(),
        "batch_size": 3,
        "max_epochs": 2,
        "lr": 0.02,
        "forces_weight": 10.0,
        "progress": False,
        "output_dir": str(output_dir),
    }
    d.update(overrides)
    return d
