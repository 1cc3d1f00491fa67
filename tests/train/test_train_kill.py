"""A training process killed with SIGKILL resumes exactly (slow: run with ``-m slow``)."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import yaml

from tace_jax.testing import tiny_model
from tace_jax.train import fit

MODEL = tiny_model()


def _config(out):
    return {
        "train_file": "bundled:rmd17_ethanol_train",
        "data_options": {"index": "0:40"},
        "valid_fraction": 0.1,
        "model": MODEL,
        "batch_size": 2,
        "max_epochs": 3,
        "lr": 0.01,
        "checkpoint_every": 5,
        "dtype": "float64",
        "output_dir": str(out),
        "progress": False,
        "seed": 1,
    }


def _steps(ckpt_dir):
    if not ckpt_dir.exists():
        return []
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    ref = fit(_config(tmp_path / "ref"))  # 36 structures, 18 steps/epoch, 54 steps
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(tmp_path / "killed")))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "JAX_ENABLE_X64": "1",
        "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tace_jax.cli.main", "train", str(cfg_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and not [s for s in _steps(ckpt) if s >= 25]:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _steps(ckpt)
    assert killed_at and max(killed_at) < ref.steps, killed_at
    resumed = fit(_config(tmp_path / "killed"))
    assert resumed.steps == ref.steps
    diff = jax.tree.map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
        (resumed.state.params, resumed.state.ema_params),
        (ref.state.params, ref.state.ema_params),
    )
    assert max(jax.tree.leaves(diff)) <= 1e-6
