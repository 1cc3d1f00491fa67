"""The package is layered: no module imports from a layer above it (issue 8).

Every ``import`` and ``from … import`` in ``tace_jax/`` is parsed, including those inside
functions (a lazy import is still a dependency). Packages of the same rank may not import each
other. Also: every file stays under 500 lines, and no test double is exported by a feature
package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tace_jax"

#: Bottom to top (README "Layout").
RANK = {
    "ops": 0,
    "data": 1,
    "nn": 2,
    "properties": 2,
    "models": 3,
    "inference": 4,
    "train": 5,
    "md": 5,
    "vib": 5,
    "calculator": 5,
    "spectra": 5,
    "testing": 6,
    "cli": 6,
    "main_job": 6,
    "configs": 6,
    "resources": 6,
}


def _package(module: str) -> str | None:
    """``tace_jax.a.b`` → ``a``; the top-level ``tace_jax`` itself → None."""
    parts = module.split(".")
    if parts[0] != "tace_jax" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every tace_jax import in ``path``."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    here = list(rel.parts)
    if here[-1] == "__init__":
        here = here[:-1]
    else:
        here = here[:-1]  # the package the module lives in
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("tace_jax")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("tace_jax"):
                if mod == "tace_jax":  # from tace_jax import x: x is a package or a name
                    out += [(node.lineno, f"tace_jax.{a.name}") for a in node.names]
                else:
                    out.append((node.lineno, mod))
    return out


FILES = sorted(p for p in ROOT.rglob("*.py"))


def _own_package(path: Path) -> str | None:
    rel = path.relative_to(ROOT)
    if len(rel.parts) == 1:
        name = rel.stem
        return None if name == "__init__" else name
    return rel.parts[0]


def test_every_package_has_a_rank():
    packages = {_own_package(p) for p in FILES} - {None}
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_from_a_layer_above(path):
    own = _own_package(path)
    if own is None:  # tace_jax/__init__.py: the curated API re-exports everything
        return
    bad = []
    for line, mod in _imports(path):
        target = _package(mod)
        if target is None or target == own or target not in RANK:  # e.g. __version__
            continue
        if RANK[target] >= RANK[own]:
            bad.append(f"line {line}: {mod} (rank {RANK[target]} >= {own} rank {RANK[own]})")
    assert not bad, f"{path.relative_to(ROOT)} imports from a layer above or beside it: {bad}"


def test_the_checker_sees_back_edges(tmp_path):
    """The parser resolves relative and lazy imports (so the test above can fail)."""
    fake = ROOT / "data" / "graph.py"
    mods = [m for _, m in _imports(fake)]
    assert "tace_jax.data.fields" in mods
    src = "def f():\n    from tace_jax.models import TACE\n    from ..inference import Potential\n"
    probe = ROOT / "data" / "_probe_layers.py"
    try:
        probe.write_text(src)
        mods = [m for _, m in _imports(probe)]
    finally:
        probe.unlink()
    assert mods == ["tace_jax.models", "tace_jax.inference"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_are_short(path):
    n = len(path.read_text().splitlines())
    assert n < 500, f"{path.relative_to(ROOT)} has {n} lines (limit 500)"


def test_md_exports_no_test_double():
    import tace_jax.md
    import tace_jax.properties

    for mod in (tace_jax.md, tace_jax.properties):
        names = set(getattr(mod, "__all__", dir(mod)))
        doubles = {n for n in names if "morse" in n.lower() or "toy" in n.lower()}
        assert not doubles, f"{mod.__name__} exports test doubles {doubles}"
