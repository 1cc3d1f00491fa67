"""Multi-host training for real: 2 processes on localhost (gloo CPU collectives).

* ``tace-jax train --coordinator/--num-processes/--process-id`` with 2 processes gives, after
  N steps, the parameters of a 1-process run over the same global batches (≤ 1e-5 relative,
  float32), and only process 0 writes files;
* killing one process makes the other exit non-zero, with a message, in bounded time;
* the helpers of ``tace_jax.train.distributed`` (single process).

The 2-process tests start fresh interpreters (the conftest's 64-bit mode stays out of them).
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tace_jax.data import GraphLoader, bundled_dataset_path, read_structures
from tace_jax.testing import tiny_model
from tace_jax.train import distributed

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = tiny_model()


def _env():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    for k in ("XLA_FLAGS", "JAX_ENABLE_X64", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE"):
        env.pop(k, None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path, **kw) -> Path:
    cfg = {
        "train_file": str(bundled_dataset_path("rmd17_ethanol_train")),
        "test_file": str(bundled_dataset_path("rmd17_ethanol_test")),
        "data_options": {"index": "0:16"},
        "valid_fraction": 0.25,  # 12 train structures: 6 per process
        "model": TINY_MODEL,
        "batch_size": 4,  # global; 2 per process
        "max_epochs": 3,
        "max_steps": 5,  # 3 steps per epoch: the run crosses an epoch (a new shuffle)
        "lr": 0.02,
        "forces_weight": 10.0,
        "dtype": "float32",
        "output_dir": str(tmp_path / "run"),
        "progress": False,
        "seed": 3,
    }
    cfg.update(kw)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _launch(config: Path, tmp_path, overrides=((), ()), heartbeat=10):
    port = _free_port()
    procs = []
    for k in range(2):
        cmd = [sys.executable, "-m", "tace_jax.cli.main", "train", str(config), *overrides[k]]
        cmd += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
        cmd += ["--process-id", str(k), "--heartbeat-timeout", str(heartbeat)]
        log = open(tmp_path / f"proc{k}.log", "w")  # noqa: SIM115
        procs.append((subprocess.Popen(cmd, env=_env(), stdout=log, stderr=log, cwd=ROOT), log))
    return procs


def _finish(procs, tmp_path, timeout=600):
    codes = []
    for p, log in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        finally:
            if p.poll() is None:
                p.kill()
            log.close()
    logs = [(tmp_path / f"proc{k}.log").read_text() for k in range(2)]
    return codes, logs


# The 1-process reference: the same config, the train loader's plan replaced by the union of
# the two processes' plans (process k shuffles frames k, k+2, ... with the shared seed), then
# the 2-process checkpoint is compared with the reference state.
REFERENCE = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np, optax
    from tace_jax.data import GraphLoader
    from tace_jax.train import Checkpointer, Trainer, load_config, setup_training

    cfg = load_config(sys.argv[1], [f"output_dir={sys.argv[2]}"])
    setup = setup_training(cfg)
    full, train = setup.train_loader, setup.data.train
    shards = [GraphLoader(train[k::2], setup.model_cfg.cutoff, setup.model_cfg.atomic_numbers,
                          batch_size=cfg.batch_size // 2, shuffle=True, seed=cfg.seed)
              for k in range(2)]
    def merged(epoch):
        plans = [s.plan(epoch) for s in shards]
        return [np.concatenate([k + 2 * np.asarray(p[i]) for k, p in enumerate(plans)])
                for i in range(len(plans[0]))]
    full.plan = merged
    assert setup.num_devices == 1 and jax.process_count() == 1
    trainer = Trainer(setup)
    start = jax.device_get(trainer.state.params)
    res = trainer.run()
    ckpt = Checkpointer(sys.argv[3])
    step, two, meta = ckpt.restore_latest(jax.device_get(res.state))
    def rel(a, b):
        d = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))
                                              / (np.max(np.abs(np.asarray(y))) + 1e-30)), a, b)
        return max(jax.tree.leaves(d))
    ref = jax.device_get(res.state)
    print(json.dumps({
        "steps": res.steps, "two_step": int(step),
        "dtype": str(jax.tree.leaves(ref.params)[0].dtype),
        "rel_params": rel(two.params, ref.params), "rel_ema": rel(two.ema_params, ref.ema_params),
        "moved": float(optax.global_norm(jax.tree.map(lambda x, y: x - y, ref.params, start))
                       / optax.global_norm(start)),
        "ref_valid": {r["step"]: r.get("valid_loss") for r in res.history},
        "ref_test": res.test_metrics,
    }))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("resume", [False, True])
def test_two_processes_match_one(tmp_path, resume):
    """5 steps on 2 processes == 5 steps on 1; with ``resume``, the 2-process run stops after
    2 steps and a second one continues from process 0's checkpoint (sent to process 1)."""
    config = _config(tmp_path)
    t0 = time.time()
    other = (f"output_dir={tmp_path / 'other'}",)
    if resume:
        first = _launch(config, tmp_path, overrides=(("max_steps=2",), (*other, "max_steps=2")))
        codes, logs = _finish(first, tmp_path)
        assert codes == [0, 0], logs
    procs = _launch(config, tmp_path, overrides=((), other))
    codes, logs = _finish(procs, tmp_path)
    t_two = time.time() - t0
    assert codes == [0, 0], logs
    assert ("resumed from checkpoint step 2" in logs[0]) == resume
    assert "2 process(es)" in logs[0] and "2 process(es)" not in logs[1]
    assert not (tmp_path / "other").exists()  # process 1 never touched its output_dir
    run = tmp_path / "run"
    for name in ("config.yaml", "statistics.json", "metrics.jsonl", "train.log", "model"):
        assert (run / name).exists(), name
    t0 = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            REFERENCE,
            str(config),
            str(tmp_path / "ref"),
            str(run / "checkpoints"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    t_ref = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"2-process run {t_two:.1f} s, 1-process reference {t_ref:.1f} s: {res}")
    assert res["steps"] == 5 and res["two_step"] == 5 and res["dtype"] == "float32"
    assert res["moved"] > 1e-3  # the parameters really changed in 5 steps (relative L2)
    assert res["rel_params"] <= 1e-5 and res["rel_ema"] <= 1e-5, res
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    two_valid = {str(r["step"]): r.get("valid_loss") for r in rows}
    assert set(res["ref_valid"]) <= set(two_valid)  # resumed: + the first run's final row
    for step, loss in res["ref_valid"].items():
        assert np.isclose(two_valid[step], loss, rtol=1e-5), (step, two_valid, res["ref_valid"])
    if not resume:  # (a resumed run may have exported its best model at another step)
        test = json.loads((run / "test_metrics.json").read_text())
        for name, metrics in res["ref_test"].items():
            assert np.isclose(test[name]["loss"], metrics["loss"], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_killed_process_fails_the_run(tmp_path, victim):
    config = _config(tmp_path, max_steps=100000, max_epochs=100000, data_options={"index": "0:8"})
    procs = _launch(config, tmp_path, heartbeat=10)
    log0 = tmp_path / "proc0.log"
    deadline = time.time() + 300
    while "tace-jax training:" not in log0.read_text():  # both processes are training
        assert time.time() < deadline and all(p.poll() is None for p, _ in procs), log0.read_text()
        time.sleep(0.5)
    time.sleep(3.0)
    procs[victim][0].kill()
    t0 = time.time()
    survivor = 1 - victim
    codes, logs = _finish(procs, tmp_path, timeout=90)
    elapsed = time.time() - t0
    print(f"victim {victim}: survivor exited with {codes[survivor]} after {elapsed:.1f} s")
    assert codes[survivor] != 0 and elapsed < 90
    msg = logs[survivor]
    assert "another process of the run died" in msg or "another task died" in msg, msg[-3000:]


# ------------------------------------------------------------------ single-process helpers
def test_import_does_not_start_jax():
    """``jax.distributed.initialize`` must run before the JAX backend starts, and the CLI
    imports tace_jax first: importing it must not start the backend (e.g. by jax-md)."""
    code = (
        "import jax._src.xla_bridge as xb, tace_jax, tace_jax.cli.main, tace_jax.cli.train;"
        "from tace_jax.train import distributed; print(xb.backends_are_initialized())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def test_initialize_arguments():
    with pytest.raises(ValueError, match="--process-id"):
        distributed.initialize("localhost:1234", 2)
    with pytest.raises(ValueError, match=r"must be in \[0"):
        distributed.initialize("localhost:1234", 2, 2)
    with pytest.raises(ValueError, match="host:port"):
        distributed.initialize("localhost", 2, 0)
    assert distributed.initialize("localhost:1234", 1, 0) is None  # one process: nothing to do


def test_cluster_environment(monkeypatch):
    for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_NPROCS", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("TPU_WORKER_HOSTNAMES", raising=False)
    assert distributed.cluster_environment() is None
    assert distributed.initialize() is None  # no cluster: a plain run
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert distributed.cluster_environment() is None  # a one-task job is a plain run
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert distributed.cluster_environment() == "slurm"
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert distributed.cluster_environment() == "openmpi"
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t0")
    assert distributed.cluster_environment() is None
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t0,t1")
    assert distributed.cluster_environment() == "tpu"


def test_shards_and_padding():
    frames = list(range(11))
    shards = [distributed.shard_frames(frames, k, 3) for k in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(shards, [])) == frames  # a partition: nothing lost, nothing twice
    with pytest.raises(ValueError, match="shard index"):
        distributed.shard_frames(frames, 3, 3)
    assert distributed.shard_frames(frames) == frames  # one process holds everything
    s = read_structures(bundled_dataset_path("rmd17_ethanol_train"), index="0:5")
    loader = GraphLoader(s, 4.0, (1, 6, 8), batch_size=1, shuffle=False, prefetch=0)
    groups = list(distributed.padded_groups(loader, 0, 0, 2, 4))  # 5 batches, 2 per step
    assert [n for _, n in groups] == [2, 2, 1, 0]
    last = groups[-1][0]
    assert last.positions.shape[0] == 2 and not last.graph_mask.any()
    assert not last.targets["weight"].any() and not last.node_mask.any()
    # a resumed epoch after its last (partial) step has no step left
    assert list(distributed.padded_groups(loader, 0, 5, 2, 0)) == []
    with pytest.raises(RuntimeError, match="more than the agreed"):
        list(distributed.padded_groups(loader, 0, 0, 2, 2))


def test_shard_frames_of_preprocessed_data_stays_lazy(tmp_path, monkeypatch):
    """``train_dir`` with several processes: each process keeps a lazy view of its frames; no
    structure is read to shard them."""
    from tace_jax.data.shard_data import ShardSubset, StreamingData
    from tace_jax.data.shard_writer import write_shards
    from tace_jax.data.shards import ShardSet

    frames = read_structures(bundled_dataset_path("rmd17_ethanol_train"), index="0:10")
    write_shards(frames, tmp_path / "sh", 4.0, shard_size=4)
    data = StreamingData(tmp_path / "sh", valid_fraction=0.2, seed=1)

    def no_read(*a, **k):
        raise AssertionError("a structure was read")

    monkeypatch.setattr(ShardSet, "read_items", no_read)
    parts = [distributed.shard_frames(data.train, k, 2) for k in range(2)]
    assert all(isinstance(p, ShardSubset) for p in parts)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([p.indices for p in parts])), data.train.indices
    )
    monkeypatch.setattr(distributed.jax, "process_count", lambda: 2)
    monkeypatch.setattr(distributed.jax, "process_index", lambda: 1)
    mine = distributed.shard_training_data(data)
    assert mine is not data and mine.valid is data.valid
    np.testing.assert_array_equal(mine.train.indices, data.train.indices[1::2])


@pytest.mark.slow
def test_two_processes_train_dir_match_train_file(tmp_path):
    """2 processes from preprocessed shards (``train_dir``, global shuffle) give the parameters
    of 2 processes from the same frames in memory (``train_file``)."""
    import ase.io

    from tace_jax.data import structure_to_atoms

    frames = read_structures(bundled_dataset_path("rmd17_ethanol_train"), index="0:16")
    xyz = tmp_path / "eth16.xyz"
    ase.io.write(xyz, [structure_to_atoms(s) for s in frames], format="extxyz")
    shards = tmp_path / "shards"
    pre = subprocess.run(
        [
            sys.executable,
            "-m",
            "tace_jax.cli.main",
            "preprocess",
            str(xyz),
            "--out",
            str(shards),
            "--cutoff",
            str(TINY_MODEL["cutoff"]),
            "--shard-size",
            "5",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert pre.returncode == 0, pre.stderr[-3000:]
    params = {}
    for kind in ("file", "dir"):
        d = tmp_path / kind
        d.mkdir()
        kw = {"train_file": str(xyz), "data_options": {}, "test_file": None}
        if kind == "dir":
            kw = {
                "train_file": None,
                "train_dir": str(shards),
                "data_options": {},
                "test_file": None,
                "stream_options": {"shuffle": "global"},
            }
        config = _config(d, max_steps=4, **kw)
        codes, logs = _finish(_launch(config, d), d)
        assert codes == [0, 0], logs
        meta = json.loads((d / "run" / "statistics.json").read_text())
        params[kind] = (meta, d / "run" / "model")
    from tace_jax.inference import Potential

    a, b = (Potential.load(str(params[k][1])) for k in ("file", "dir"))
    la, lb = (
        np.concatenate([np.ravel(x) for x in __import__("jax").tree.leaves(p.variables)])
        for p in (a, b)
    )
    assert np.max(np.abs(la - lb)) <= 1e-6 * np.max(np.abs(la)), np.max(np.abs(la - lb))
