"""float64 from the command line: JAX's own ``JAX_ENABLE_X64=1``; the CLI never switches it and
a float64 request without it fails clearly, before anything is written."""

from __future__ import annotations

import contextlib

import jax

from tace_jax.cli.main import main


@contextlib.contextmanager
def _x64_off():
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", True)


def test_the_cli_never_switches_x64(capsys):
    with _x64_off():
        assert main(["--help"]) == 0
        assert not jax.config.jax_enable_x64
    assert "JAX_ENABLE_X64=1" in capsys.readouterr().out


def test_float64_requests_without_x64_fail_clearly(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"train_file: bundled:rmd17_ethanol_train\ndtype: float64\noutput_dir: {tmp_path}\n"
    )
    with _x64_off():
        assert main(["train", str(cfg)]) == 2
        assert "JAX_ENABLE_X64=1 tace-jax train" in capsys.readouterr().err
        args = [str(tmp_path / "x.ckpt"), str(tmp_path / "out"), "--save", str(tmp_path / "m")]
        assert main(["convert", *args]) == 2
        assert "JAX_ENABLE_X64=1 tace-jax convert" in capsys.readouterr().err
        assert not jax.config.jax_enable_x64
    assert not (tmp_path / "out.npz").exists()
