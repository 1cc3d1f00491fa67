"""``tace-jax --x64``: the one explicit switch to 64-bit JAX; float64 without it fails clearly."""

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


def test_x64_flag_enables_64_bit_jax(capsys):
    with _x64_off():
        assert main(["--help"]) == 0 and not jax.config.jax_enable_x64
        assert main(["--x64", "--help"]) == 0
        assert jax.config.jax_enable_x64
    assert "--x64" in capsys.readouterr().out


def test_float64_requests_without_x64_fail_clearly(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"train_file: bundled:rmd17_ethanol_train\ndtype: float64\noutput_dir: {tmp_path}\n"
    )
    with _x64_off():
        assert main(["train", str(cfg)]) == 2
        assert "tace-jax --x64 train" in capsys.readouterr().err
        args = [str(tmp_path / "x.ckpt"), str(tmp_path / "out"), "--save", str(tmp_path / "m")]
        assert main(["convert", *args]) == 2
        assert "tace-jax --x64 convert" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()
