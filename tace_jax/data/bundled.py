"""Small datasets shipped with the package (``tace_jax/resources``; see PROVENANCE.md there)."""

from __future__ import annotations

import importlib.resources
import pathlib

from .errors import DataError

__all__ = ["bundled_dataset_path", "list_bundled_datasets"]

_DATASETS = {
    "rmd17_ethanol_train": "rmd17_ethanol_train_01.npz",
    "rmd17_ethanol_test": "rmd17_ethanol_test_01_first200.npz",
}


def list_bundled_datasets() -> list[str]:
    """Names accepted by :func:`bundled_dataset_path`."""
    return sorted(_DATASETS)


def bundled_dataset_path(name: str) -> pathlib.Path:
    """Path of a bundled dataset file.

    Args:
        name: ``"rmd17_ethanol_train"`` (rMD17 ethanol ``train_01``, 1000 frames) or
            ``"rmd17_ethanol_test"`` (the first 200 frames of ``test_01``); the file name itself
            is accepted too. Both are rMD17 npz files in kcal/mol, converted to eV by
            :func:`~tace_jax.data.readers.read_structures`.

    Raises:
        DataError: for an unknown name or a missing file.
    """
    filename = _DATASETS.get(name, name if name in _DATASETS.values() else None)
    if filename is None:
        raise DataError(f"unknown bundled dataset {name!r}; available: {list_bundled_datasets()}")
    path = pathlib.Path(str(importlib.resources.files("tace_jax").joinpath("resources", filename)))
    if not path.exists():
        raise DataError(f"bundled dataset {name!r}: file {path} is missing from the installation")
    return path
