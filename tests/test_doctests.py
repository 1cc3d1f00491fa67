"""Every ``Examples:``/``Example:`` block with ``>>>`` lines in the package runs as a doctest.

Collected through :mod:`doctest` so that the README's single test command (``pytest tests``)
runs them too. A block can opt out line by line with ``# doctest: +SKIP`` (used where the
example needs a trained model file).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tace_jax

_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(tace_jax.__path__, "tace_jax.")
    if not m.name.endswith("__main__")
)


def _tests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    out = []
    for name in _MODULES:
        module = importlib.import_module(name)
        for t in finder.find(module):
            if t.examples and t.name.startswith(name):
                out.append(t)
    return out


TESTS = _tests()


def test_there_are_doctests():
    assert len(TESTS) >= 5, [t.name for t in TESTS]


@pytest.mark.parametrize("test", TESTS, ids=lambda t: t.name)
def test_doctest(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda s: None)
    result = runner.summarize(verbose=False)
    if result.failed:
        report = []
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=report.append)
        pytest.fail("".join(report))
