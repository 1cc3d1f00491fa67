"""Read files into lists of :class:`~tace_jax.data.structure.Structure`.

Formats: everything ``ase.io.read`` understands (extxyz/xyz, also ``.xz``/``.gz``), ASE
databases (``.db``), rMD17-style npz and a generic npz (see :mod:`tace_jax.data.npz`).

In ase ≥ 3.23 recognised properties (energy, forces, stress, dipole, charges, …) live in
``atoms.calc.results`` while other keys stay in ``atoms.info``/``atoms.arrays``; labels are looked
up in all three, in that order.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import DataError, where
from .fields import INPUTS
from .structure import LABELS, Structure
from .units import resolve_units

__all__ = [
    "DataKeys",
    "read_structures",
    "structure_from_atoms",
    "structure_to_atoms",
    "validate_structures",
]


@dataclasses.dataclass(frozen=True)
class DataKeys:
    """Names under which labels are stored in the input files (``None`` = never read)."""

    energy_key: str | None = "energy"
    forces_key: str | None = "forces"
    stress_key: str | None = "stress"
    virials_key: str | None = "virials"
    dipole_key: str | None = "dipole"
    polarizability_key: str | None = "polarizability"
    born_charges_key: str | None = "born_effective_charges"
    charges_key: str | None = "charges"
    total_charge_key: str | None = "total_charge"
    level_key: str | None = "level"
    weight_key: str | None = "weight"
    electric_field_key: str | None = "electric_field"
    polarization_key: str | None = "polarization"
    hessian_key: str | None = "hessian"

    @classmethod
    def make(cls, keys: DataKeys | Mapping | None = None, **overrides) -> DataKeys:
        """Build from ``None``, a mapping or a ``DataKeys``, then apply ``overrides``."""
        if keys is None:
            keys = cls()
        elif isinstance(keys, Mapping):
            keys = cls(**dict(keys))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown key options {sorted(unknown)}; known: {sorted(names)}")
        return dataclasses.replace(keys, **overrides)

    def key(self, label: str) -> str | None:
        """The file key of ``label`` (``"energy"`` → ``energy_key``)."""
        return getattr(self, f"{label}_key")


def _lookup(atoms, key: str | None):
    if key is None:
        return None
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    for store in (results, atoms.info, atoms.arrays):
        if key in store and store[key] is not None:
            return store[key]
    return None


def _level(value, levels: Mapping[str, int] | None, loc: str) -> int:
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value
    if isinstance(value, str):
        if levels is None or value not in levels:
            raise DataError(f"{loc}: field 'level' is {value!r}; pass levels={{name: index}}")
        return int(levels[value])
    if levels is not None and value in levels:
        return int(levels[value])
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{loc}: field 'level' is not an integer: {value!r}") from exc


def structure_from_atoms(
    atoms,
    keys: DataKeys | Mapping | None = None,
    units: Mapping | None = None,
    source: tuple[str, int] = ("<memory>", 0),
    levels: Mapping[str, int] | None = None,
    factors: Mapping[str, float] | None = None,
) -> Structure:
    """Convert an ``ase.Atoms`` (labels in ``calc.results``, ``info`` or ``arrays``).

    Args:
        atoms: the configuration.
        keys: label names, see :class:`DataKeys`.
        units: units of the stored values (see :func:`~tace_jax.data.units.resolve_units`).
        source: ``(file, frame)`` for error messages.
        levels: optional mapping of level names (strings in the file) to integers.
        factors: precomputed unit factors (overrides ``units``).
    """
    keys = DataKeys.make(keys)
    f = dict(factors) if factors is not None else resolve_units(units)
    loc = where(source)
    fields: dict = {}
    for label in LABELS:
        value = _lookup(atoms, keys.key(label))
        if value is None:
            continue
        try:
            fields[label] = np.asarray(value, dtype=np.float64) * f[label]
        except (TypeError, ValueError) as exc:
            raise DataError(f"{loc}: field {label!r} is not numeric ({exc})") from exc
    level = _lookup(atoms, keys.level_key)
    weight = _lookup(atoms, keys.weight_key)
    inputs = {}
    for name, spec in INPUTS.items():
        if name in fields or name == "level":
            continue
        value = (atoms.arrays if spec.per_node else atoms.info).get(name)
        if value is not None:
            inputs[name] = np.asarray(value)
    return Structure(
        numbers=atoms.get_atomic_numbers(),
        positions=np.asarray(atoms.get_positions()) * f["length"],
        cell=np.asarray(atoms.get_cell().array) * f["length"],
        pbc=atoms.get_pbc(),
        level=0 if level is None else _level(level, levels, loc),
        weight=1.0 if weight is None else np.asarray(weight, dtype=np.float64).item(),
        source=source,
        inputs=inputs,
        **fields,
    )


def structure_to_atoms(structure: Structure):
    """An ``ase.Atoms`` with energy/forces/stress/dipole/charges on a SinglePointCalculator and
    the other labels in ``info`` / ``arrays``."""
    import ase
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = ase.Atoms(
        numbers=structure.numbers,
        positions=structure.positions,
        cell=structure.cell,
        pbc=structure.pbc,
    )
    calc_keys = {"energy", "forces", "stress", "dipole", "charges"}
    results = {k: v for k, v in structure.labels().items() if k in calc_keys}
    for k, v in structure.labels().items():
        if k == "born_charges":
            atoms.arrays["born_effective_charges"] = np.array(v).reshape(-1, 9)
        elif k == "hessian":  # extxyz info holds flat arrays: 9n² values
            atoms.info["hessian"] = np.array(v).reshape(-1)
        elif k not in calc_keys:
            atoms.info[k] = np.array(v) if np.ndim(v) else v
    if structure.level:  # level 0 is the default: no spurious "unused input" warnings
        atoms.info["level"] = structure.level
    atoms.info["weight"] = structure.weight
    if structure.charges is not None:  # a model input too (read from atoms.arrays)
        atoms.arrays["charges"] = np.array(structure.charges)
    for k, v in structure.inputs.items():
        (atoms.arrays if INPUTS[k].per_node else atoms.info)[k] = np.array(v)
    if results:
        atoms.calc = SinglePointCalculator(atoms, **{k: np.array(v) for k, v in results.items()})
    return atoms


def _guess_format(path: str, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    name = path.lower()
    for suffix in (".xz", ".gz", ".bz2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".db"):
        return "db"
    return "ase"


_COMPRESSED = {".xz": "lzma", ".gz": "gzip", ".bz2": "bz2"}


def _read_ase(path: str, fmt: str, index) -> list:
    """All frames of an ase-readable file. Compressed files are first decompressed to a
    temporary file: ase's own transparent decompression seeks in the compressed stream and is
    quadratic in the number of frames (20 s instead of 0.3 s for 500 frames)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _COMPRESSED:
        import importlib
        import shutil
        import tempfile

        opener = importlib.import_module(_COMPRESSED[suffix]).open
        inner = os.path.basename(path)[: -len(suffix)]
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, inner)
            try:
                with opener(path, "rb") as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError, ValueError) as exc:
                raise DataError(
                    f"{path}, frame 0: malformed compressed file ({type(exc).__name__}: {exc})"
                ) from exc
            return _iread(local, path, fmt, index)
    return _iread(path, path, fmt, index)


def _xyz_columns(comment: str) -> int | None:
    """Columns per atom line from an extxyz ``Properties=`` spec (None: plain xyz)."""
    m = re.search(r"Properties=[\"']?([^\s\"']+)", comment)
    if m is None:
        return None
    parts = m.group(1).split(":")
    try:
        return sum(int(c) for c in parts[2::3])
    except ValueError:
        return None


def scan_xyz(path: str, name: str | None = None) -> list[int]:
    """Check the frame layout of an (ext)xyz file before parsing it.

    Every frame is an atom-count line, a comment line and that many atom lines with the
    columns its ``Properties=`` spec names (at least 4 in plain xyz).

    Returns:
        The 1-based line number of each frame's atom-count line.

    Raises:
        DataError: ``"<file>, frame k: malformed file, line L: ..."`` for a bad atom-count
            line, a wrong number of columns or a truncated frame.
    """
    name = name or path
    starts: list[int] = []
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    i, total = 0, len(lines)

    def fail(k: int, line: int, msg: str) -> DataError:
        return DataError(f"{name}, frame {k}: malformed file, line {line}: {msg}")

    while i < total:
        if not lines[i].strip():
            if any(x.strip() for x in lines[i:]):
                raise fail(len(starts), i + 1, "blank line where an atom-count line is expected")
            break
        k, head = len(starts), lines[i].split()
        if len(head) != 1 or not head[0].isdigit():
            hint = ""
            if starts:
                n_prev = int(lines[starts[-1] - 1].split()[0])
                hint = (
                    f"; frame {k - 1}'s atom-count line {starts[-1]} says {n_prev} atoms — too few?"
                )
            raise fail(
                k, i + 1, f"expected an atom-count line, got {lines[i].strip()[:60]!r}{hint}"
            )
        n = int(head[0])
        starts.append(i + 1)
        if i + 1 >= total:
            raise fail(k, i + 2, "file ends before the comment line (truncated?)")
        cols = _xyz_columns(lines[i + 1])
        for a in range(n):
            j = i + 2 + a
            if j >= total:
                raise fail(
                    k,
                    j + 1,
                    f"atom-count line {i + 1} says {n} atoms but the file ends after "
                    f"{a} atom lines (truncated?)",
                )
            tok = lines[j].split()
            if len(tok) == 1 and tok[0].isdigit():
                raise fail(
                    k,
                    j + 1,
                    f"atom-count line {i + 1} says {n} atoms but line {j + 1} looks "
                    f"like the next frame's atom-count line (only {a} atom lines) — too many?",
                )
            if (cols is not None and len(tok) != cols) or len(tok) < 4:
                want = cols if cols is not None else "at least 4"
                raise fail(k, j + 1, f"atom {a} has {len(tok)} columns, expected {want}")
        i += n + 2
    return starts


def _iread(local: str, path: str, fmt: str, index) -> list:
    import ase.io

    frames = []
    ase_format = None if fmt == "ase" else fmt
    starts: list[int] = []
    if fmt in ("xyz", "extxyz") or (fmt == "ase" and local.lower().endswith((".xyz", ".extxyz"))):
        starts = scan_xyz(local, path)
    try:
        for atoms in ase.io.iread(local, index=index, format=ase_format):
            frames.append(atoms)
    except Exception as exc:  # ase raises many types for malformed input
        if "Empty file" in str(exc) or os.path.getsize(local) == 0:
            raise DataError(f"{path}: empty file (no frames)") from exc
        k = len(frames)
        line = f" (atom-count line {starts[k]})" if k < len(starts) else ""
        raise DataError(
            f"{path}, frame {k}: malformed file{line}, could not parse "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    return frames


def _read_db(path: str) -> list:
    import ase.db

    frames = []
    try:
        with ase.db.connect(path, type="db") as db:
            for row in db.select():
                atoms = row.toatoms(add_additional_information=True)
                info = atoms.info
                flat = {**info.pop("key_value_pairs", {}), **info.pop("data", {})}
                info.update(flat)
                frames.append(atoms)
    except Exception as exc:
        raise DataError(
            f"{path}, frame {len(frames)}: malformed ASE database ({type(exc).__name__}: {exc})"
        ) from exc
    return frames


def read_structures(
    path: str | os.PathLike,
    *,
    keys: DataKeys | Mapping | None = None,
    units: Mapping | None = None,
    fmt: str | None = None,
    index=":",
    require: Sequence[str] = (),
    atomic_numbers: Sequence[int] | None = None,
    levels: Mapping[str, int] | None = None,
    min_distance: float | None = None,
    **key_overrides,
) -> list[Structure]:
    """Read every frame of a file.

    Args:
        path: file to read.
        keys: label names (:class:`DataKeys` or mapping); ``key_overrides`` such as
            ``energy_key="REF_energy"`` are applied on top.
        units: units of the file, e.g. ``{"energy": "kcal/mol"}``. rMD17 npz files default to
            kcal/mol.
        fmt: ``"npz"``, ``"db"``, ``"ase"`` or an ase format name; guessed from the suffix.
        index: frame selection in ase syntax (``":"``, ``"10:20"``, ``-1``); frame numbers in
            ``source`` stay those of the file.
        require: labels every frame must have (e.g. ``("energy", "forces")``).
        atomic_numbers: when given, elements outside it raise.
        levels: mapping of level names to integers (for string levels in files).
        min_distance: when given, atoms closer than this (Å) raise.

    Returns:
        The structures, each with ``source = (path, frame)``.

    Raises:
        DataError: naming file, frame and field for missing files, malformed or empty files,
            missing labels, non-finite values, wrong shapes and unknown elements.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    keys = DataKeys.make(keys, **key_overrides)
    kind = _guess_format(path, fmt)
    if kind == "npz":
        from .npz import read_npz

        structures = read_npz(path, keys=keys, units=units, levels=levels)
    else:
        frames = _read_db(path) if kind == "db" else _read_ase(path, kind, ":")
        factors = resolve_units(units)
        structures = [
            structure_from_atoms(a, keys, source=(path, k), levels=levels, factors=factors)
            for k, a in enumerate(frames)
        ]
    if not (isinstance(index, str) and index == ":"):
        from ase.io.formats import string2index

        sel = string2index(index) if isinstance(index, str) else index
        try:
            structures = structures[sel] if isinstance(sel, slice) else [structures[sel]]
        except IndexError as exc:
            raise DataError(
                f"{path}: index {index!r} out of range ({len(structures)} frames)"
            ) from exc
        if not structures:
            raise DataError(f"{path}: index {index!r} selects no frames")
    if not structures:
        raise DataError(f"{path}: empty file (no frames)")
    validate_structures(
        structures, atomic_numbers=atomic_numbers, require=require, min_distance=min_distance
    )
    return structures


def validate_structures(
    structures: Sequence[Structure],
    *,
    atomic_numbers: Sequence[int] | None = None,
    require: Sequence[str] = (),
    min_distance: float | None = None,
) -> None:
    """Check labels, elements and (optionally) overlapping atoms.

    Raises:
        DataError: naming the file, frame and field of the first problem found.
    """
    unknown = set(require) - set(LABELS)
    if unknown:
        raise DataError(f"require: unknown labels {sorted(unknown)}; known: {LABELS}")
    allowed = None if atomic_numbers is None else set(int(z) for z in atomic_numbers)
    for s in structures:
        for label in require:
            if getattr(s, label) is None:
                raise DataError(f"{s.where}: field {label!r} is missing (required)")
        if allowed is not None:
            bad = sorted(set(s.numbers.tolist()) - allowed)
            if bad:
                raise DataError(
                    f"{s.where}: field 'numbers' has element(s) {bad} not in the model's "
                    f"atomic_numbers {sorted(allowed)}"
                )
        if min_distance is not None and s.n_atoms > 1:
            from .neighbors import neighbor_list

            neighbor_list(
                s.positions,
                s.cell,
                s.pbc,
                cutoff=min_distance * 1.5 + 1e-6,
                min_distance=min_distance,
                where=s.where,
            )
