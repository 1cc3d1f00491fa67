"""Project-wide pytest configuration.

* float64 is enabled for the whole test run (in every xdist worker, since each one runs
  ``pytest_configure``). The package itself never touches ``jax_enable_x64``; tests that check
  float32 behaviour pass explicit dtypes.
* ``key``: a PRNG key that is deterministic per test (seeded from the test's node id), so tests
  are reproducible and independent of execution order / xdist scheduling.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

# One BLAS thread per process: the suite runs under ``pytest -n <cores>`` and oversubscribed
# OpenBLAS threads spin. Set before numpy is imported (an explicit environment value wins).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

# Test the working tree (also with plain ``pytest`` when the package is not installed).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def pytest_configure(config):
    jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True)
def _x64_enabled():
    """float64 on for every test; a test that leaves it switched off fails (and it is restored)."""
    jax.config.update("jax_enable_x64", True)
    yield
    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
        pytest.fail("jax_enable_x64 was switched off during the test and not restored")


@pytest.fixture(autouse=True)
def _debug_nans(request):
    """``jax_debug_nans`` on for the fast tests: any NaN produced inside a JAX computation
    fails the test at the primitive that made it. Slow tests and tests marked ``allow_nans``
    (which feed NaN on purpose to check the error path) run without it."""
    if request.node.get_closest_marker("slow") or request.node.get_closest_marker("allow_nans"):
        yield
        return
    jax.config.update("jax_debug_nans", True)
    try:
        yield
    finally:
        jax.config.update("jax_debug_nans", False)


@pytest.fixture
def seed(request) -> int:
    """A 31-bit seed derived from the test's node id."""
    return zlib.crc32(request.node.nodeid.encode()) & 0x7FFFFFFF


@pytest.fixture
def key(seed) -> jax.Array:
    """A typed PRNG key (``jax.random.key``), deterministic per test."""
    return jax.random.key(seed)


@pytest.fixture
def rng(seed):
    """A numpy ``Generator``, deterministic per test."""
    import numpy as np

    return np.random.default_rng(seed)


@pytest.fixture
def fake_model(monkeypatch, tmp_path):
    """A model path whose loading (``tace_jax.cli.md.load_potential``) yields a Morse stand-in."""
    import tace_jax.cli.md as cli_md
    from tace_jax.testing import MorsePotential

    pot = MorsePotential(atomic_numbers=(1, 8), cutoff=4.0, dtype="float64", r0=1.0)
    model = tmp_path / "model.tace"
    model.write_text("stand-in")
    monkeypatch.setattr(cli_md, "load_potential", lambda path, dtype=None: pot)
    return model
