"""The curated public API: names other issues and users rely on."""

import importlib


def test_public_names():
    import tace_jax

    for name in tace_jax.__all__:
        assert hasattr(tace_jax, name), name
    for name in ("TACEConfig", "TACE", "Potential", "TACECalculator"):
        assert name in tace_jax.__all__
    assert callable(tace_jax.Potential.from_reference)
    assert callable(tace_jax.Potential.load)
    for attr in ("save", "predict", "hessian", "jax_md"):
        assert callable(getattr(tace_jax.Potential, attr)), attr
    for fn in ("stf_basis", "cartesian_harmonics", "ictd_projectors", "couple"):
        assert callable(getattr(tace_jax.ops, fn)), fn
    cli = importlib.import_module("tace_jax.cli.main")
    assert callable(cli.main)


def test_import_sets_no_global_state():
    """Importing the package must not switch on float64 (x64 is on in this test session, so we
    check that the package source never calls jax.config.update at import)."""
    import pathlib

    import tace_jax

    root = pathlib.Path(tace_jax.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines()):
            if line.startswith(("jax.config.update", "config.update")):  # module level
                offenders.append(f"{path}:{i + 1}")
    assert not offenders, offenders
    # and a fresh interpreter importing the package still defaults to float32
    import subprocess
    import sys

    code = "import tace_jax, jax.numpy as jnp; print(jnp.zeros(1).dtype)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "float32"
