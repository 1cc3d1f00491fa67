"""Fault injection on configs, command lines and model files: clear messages, no tracebacks."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from tace_jax.cli.main import main
from tace_jax.inference import Potential, PotentialFormatError
from tace_jax.models import Statistics, TACEConfig

ROOT = Path(__file__).resolve().parents[2]
XYZ = (
    '3\nProperties=species:S:1:pos:R:3 energy=-14.0 pbc="F F F"\nO 0 0 0\nH 0.96 0 0\nH 0 0.96 0\n'
)


def _run(capsys, *argv):
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A training-output-like directory: ``model`` and ``checkpoints/``."""
    out = tmp_path_factory.mktemp("run")
    cfg = TACEConfig(
        atomic_numbers=(1, 8),
        num_channel=4,
        radial_hidden=(8,),
        num_layers=1,
        correlation=2,
        lmax_node=1,
        lmax_edge=1,
        cutoff=3.0,
    )
    Potential.init(cfg, Statistics.default(2), jax.random.key(0), dtype="float32").save(
        out / "model"
    )
    (out / "checkpoints" / "4").mkdir(parents=True)
    return out


def test_yaml_duplicate_key_cli(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("train_file: a.xyz\nmax_epochs: 3\nlr: 0.01\nmax_epochs: 4\n")
    rc, err = _run(capsys, "train", str(p))
    assert rc == 2 and f"{p}: duplicate key 'max_epochs' at lines 2 and 4" in err


@pytest.mark.parametrize(
    "override, expected",
    [
        ("lr=abc", "override 'lr=abc': config key 'lr': 'abc' is not of type float"),
        ("batchsize=2", "override 'batchsize=2': unknown config key 'batchsize'; did you mean"),
        ("model.cutof=4", "override 'model.cutof=4': unknown model key 'cutof'"),
        ("lr", "override 'lr' is not of the form key=value"),
    ],
)
def test_bad_override_cli(tmp_path, capsys, override, expected):
    p = tmp_path / "c.yaml"
    p.write_text("train_file: a.xyz\nmax_epochs: 3\n")
    rc, err = _run(capsys, "train", str(p), override)
    assert rc == 2 and expected in err and f"{p}:" not in err


def test_load_directory(tmp_path, model_dir):
    with pytest.raises(PotentialFormatError, match=r"is a directory, not a model file; a training"):
        Potential.load(tmp_path)
    with pytest.raises(PotentialFormatError, match=r"did you mean '.*model'"):
        Potential.load(model_dir / "checkpoints")
    pot = Potential.load(model_dir)  # a training output directory: its model
    assert pot.atomic_numbers == (1, 8)


def test_eval_errors_without_traceback(tmp_path, capsys, model_dir):
    data = tmp_path / "d.xyz"
    data.write_text(XYZ)
    rc, err = _run(capsys, "eval", str(tmp_path), str(data))
    assert rc == 2 and "is a directory, not a model file" in err
    rc, err = _run(capsys, "eval", str(model_dir / "checkpoints"), str(data))
    assert rc == 2 and "did you mean" in err
    rc, err = _run(capsys, "eval", str(model_dir), str(tmp_path / "missing.xyz"))
    assert rc == 2 and "missing.xyz: file not found" in err
    bad = tmp_path / "corrupt.tace"
    bad.write_bytes((model_dir / "model").read_bytes()[:200])
    rc, err = _run(capsys, "eval", str(bad), str(data))
    assert rc == 2 and "corrupt.tace" in err
    unlabelled = tmp_path / "u.xyz"
    unlabelled.write_text(XYZ.replace(" energy=-14.0", ""))
    rc, err = _run(capsys, "eval", str(model_dir), str(unlabelled))
    assert rc == 2 and "no frame has labels 'energy' or 'forces'" in err
    foreign = tmp_path / "c.xyz"
    foreign.write_text(XYZ.replace("O 0", "C 0"))
    rc, err = _run(capsys, "eval", str(model_dir), str(foreign))
    assert rc == 2 and "c.xyz, frame 0: field 'numbers' has element(s) [6]" in err


def test_eval_directory_subprocess(tmp_path):
    """The real entry point: one line on stderr, exit status 2."""
    data = tmp_path / "d.xyz"
    data.write_text(XYZ)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "tace_jax.cli.main", "eval", str(tmp_path), str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "tace-jax eval: error:" in proc.stderr and "is a directory" in proc.stderr
