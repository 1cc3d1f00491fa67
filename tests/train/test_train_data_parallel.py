"""Data parallelism: 4 (virtual CPU) devices agree with 1 device.

The check runs in a subprocess because ``--xla_force_host_platform_device_count`` must be set
before jax is imported.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from tace_jax.data import batch_structures, bundled_dataset_path, read_structures
    from tace_jax.models import Statistics, TACE, TACEConfig
    from tace_jax.train import (LossConfig, create_train_state, fit, make_mesh, make_optimizer,
                                make_schedule, make_train_step, shard_batch, stack_batches)

    assert len(jax.devices()) == 4
    out = {}
    s = read_structures(bundled_dataset_path("rmd17_ethanol_train"), index="0:8")
    Z = (1, 6, 8)
    cfg = TACEConfig(atomic_numbers=Z, cutoff=4.0, num_layers=1, correlation=2, num_channel=4,
                     lmax_node=1, lmax_edge=1, radial_hidden=(8,), readout_hidden=(4,), zbl=False)
    stats = Statistics([[-13.6, -1029.8, -2041.8]], [[1.5, 1.5, 1.5]], [[0.0, 0.0, 0.0]], 6.0)
    model = TACE(cfg, stats)
    small = [batch_structures(s[2 * i : 2 * i + 2], 4.0, Z, (64, 256, 3)) for i in range(4)]
    big = batch_structures(s, 4.0, Z, (128, 1024, 9))
    variables = model.init(jax.random.key(0), jax.tree.map(jnp.asarray, small[0]))
    opt = make_optimizer(1e-2, dtype="float32")
    loss_cfg = LossConfig(weights={"energy": 1.0, "forces": 10.0})

    def run(num_devices, stacked, steps=3):
        mesh = make_mesh(num_devices)
        step = make_train_step(model.apply, opt, loss_cfg, make_schedule("constant", 1e-2, 10),
                               mesh, ema_decay=0.9)
        state = jax.device_put(create_train_state(variables, opt, "float32"),
                               NamedSharding(mesh, P()))
        batch = shard_batch(stacked, mesh)
        out.setdefault("shards", {})[num_devices] = len(batch.positions.addressable_shards)
        losses = []
        for _ in range(steps):
            state, m = step(state, batch)
            losses.append(float(m["loss"]))
        return losses, jax.device_get((state.params, state.ema_params))

    def rel(a, b):
        d = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-30)),
                         a, b)
        return max(jax.tree.leaves(d))

    l4, p4 = run(4, stack_batches(small))
    l1, p1 = run(1, stack_batches(small))
    lb, pb = run(1, stack_batches([big]))
    out["loss_4dev"], out["loss_1dev"], out["loss_big"] = l4, l1, lb
    out["rel_4_vs_1"], out["rel_4_vs_big"] = rel(p4, p1), rel(p4, pb)
    out["dtype"] = str(jax.tree.leaves(p4)[0].dtype)

    if len(sys.argv) > 2:  # the training loop on 4 devices (incomplete last group padded)
        r = fit({"train_file": str(bundled_dataset_path("rmd17_ethanol_train")),
                 "data_options": {"index": "0:20"}, "valid_fraction": 0.25, "batch_size": 4,
                 "model": cfg.to_dict(), "max_epochs": 2, "output_dir": sys.argv[1],
                 "progress": False, "num_devices": 4})
        out["fit_steps"], out["fit_loss"] = r.steps, r.history[-1]["valid_loss"]
    print(json.dumps(out))
    """
)


def _run(tmp_path, *extra):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "run"), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_devices_match_one(tmp_path):
    res = _run(tmp_path)
    assert res["dtype"] == "float32"
    assert res["shards"] == {"4": 4, "1": 1}  # the batch really is split over 4 devices
    assert res["rel_4_vs_1"] <= 1e-5, res
    assert res["rel_4_vs_big"] <= 1e-5, res  # 4×2 graphs on 4 devices == 8 graphs on one
    for a, b in zip(res["loss_4dev"], res["loss_1dev"]):
        assert abs(a - b) <= 1e-5 * abs(b)
    assert res["loss_4dev"][-1] < res["loss_4dev"][0]


@pytest.mark.slow
def test_fit_on_four_devices(tmp_path):
    res = _run(tmp_path, "fit")
    # 15 train structures, 1 graph per device per step -> ceil(15 / 4) = 4 steps per epoch
    assert res["fit_steps"] == 8 and res["fit_loss"] > 0


def test_group_batches_pads_with_empty():
    from tace_jax.data import batch_structures, bundled_dataset_path, read_structures
    from tace_jax.train.step import group_batches

    s = read_structures(bundled_dataset_path("rmd17_ethanol_train"), index="0:5")
    batches = [batch_structures([x], 4.0, (1, 6, 8), (16, 128, 2)) for x in s]
    groups = list(group_batches(batches, 2))
    assert [n for _, n in groups] == [2, 2, 1]
    last, _ = groups[-1]
    assert last.positions.shape == (2, 16, 3)
    assert last.graph_mask[0].any() and not last.graph_mask[1].any()
    assert not last.node_mask[1].any() and not last.targets["weight"][1].any()
    assert not last.targets["has_forces"][1].any()
