"""A training process killed (SIGKILL) at random points, several times, resumes exactly.

Kill points: drawn at random from the run's wall time, plus one during a checkpoint save (an
orbax temporary directory exists). After each kill the newest complete checkpoint is still
there, the log written before the kill is kept (the log only grows) and the next run resumes
from that checkpoint; the final parameters equal an uninterrupted run's. Slow: ``-m slow``.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

from tace_jax.testing import tiny_model
from tace_jax.train import fit

ROOT = Path(__file__).resolve().parents[2]
MODEL = tiny_model()


def _config(out):
    return {
        "train_file": "bundled:rmd17_ethanol_train",
        "data_options": {"index": "0:30"},
        "valid_fraction": 0.2,
        "model": MODEL,
        "batch_size": 2,
        "max_epochs": 3,
        "lr": 0.01,
        "checkpoint_every": 3,
        "dtype": "float64",
        "output_dir": str(out),
        "progress": False,
        "seed": 2,
    }


def _steps(ckpt):
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.exists() else []


def _saving(ckpt):
    return ckpt.exists() and any(".orbax-checkpoint-tmp" in p.name for p in ckpt.iterdir())


def _start(cfg_path):
    env = {
        **os.environ,
        "JAX_ENABLE_X64": "1",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tace_jax.cli.main", "train", str(cfg_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_killed_at_random_points(tmp_path):
    t0 = time.time()
    ref = fit(_config(tmp_path / "ref"))
    wall = time.time() - t0
    out = tmp_path / "killed"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(out)))
    ckpt, log = out / "checkpoints", out / "train.log"
    rng = np.random.default_rng(0)
    kills = [*(rng.uniform(0.3, 1.0) * wall for _ in range(2)), "during-save"]
    for when in kills:
        proc = _start(cfg_path)
        before = _steps(ckpt)
        deadline = time.time() + (600 if when == "during-save" else when)
        while time.time() < deadline and proc.poll() is None:
            if when == "during-save" and _saving(ckpt):
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = _steps(ckpt)
        # a kill can still lose the newest checkpoint while that step is saved again (see
        # test_faults_checkpoint.py::test_resave_interrupted_keeps_the_checkpoint); never two
        assert not before or (after and max(after) >= sorted(before)[-2:][0]), (when, before, after)
        text = log.read_text() if log.exists() else ""
        latest = max(after) if after else None
    final = fit(_config(out))
    full = log.read_text()
    assert full.startswith(text)  # nothing logged before the last kill was lost
    if latest is not None:
        assert f"resumed from checkpoint step {latest} " in full
    assert final.steps == ref.steps
    diff = jax.tree.map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
        final.state.params,
        ref.state.params,
    )
    assert max(jax.tree.leaves(diff)) <= 1e-6
