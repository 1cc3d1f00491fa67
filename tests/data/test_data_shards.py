"""Preprocessed shards and the streaming loader (issue 12, build 5).

Round trip: ``write_shards`` → :class:`StreamingLoader` gives exactly the batches of the
in-memory :class:`GraphLoader` (same order); statistics from the shards equal
``compute_statistics``; bad shards (corrupted, truncated, other cutoff, other version) raise
a :class:`DataError` naming the file.
"""

from __future__ import annotations

import json
import warnings

import h5py
import jax
import numpy as np
import pytest

from tace_jax.data import (
    DataError,
    GraphLoader,
    Structure,
    bundled_dataset_path,
    compute_statistics,
    read_structures,
)
from tace_jax.data.shard_data import StreamingData, shard_statistics
from tace_jax.data.shard_writer import write_shards
from tace_jax.data.shards import ShardSet
from tace_jax.data.streaming import StreamingLoader, greedy_caps

CUTOFF = 4.0
ZS = [1, 6, 8, 14]


def _sym(a):
    return a + a.T


def _periodic(k: int, rng) -> Structure:
    """A small Si box with stress, partial charges and a field (some of them absent)."""
    grid = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3) * 2.7
    pos = grid + rng.normal(scale=0.1, size=grid.shape)
    cell = np.eye(3) * 5.4 + rng.normal(scale=0.05, size=(3, 3))
    pos[0] += cell[0]  # outside the cell: exercises the wrap before the cast
    return Structure(
        numbers=np.full(8, 14),
        positions=pos,
        cell=cell,
        pbc=[True, True, k % 2 == 0],
        energy=-30.0 + rng.normal(),
        forces=rng.normal(size=(8, 3)),
        stress=rng.normal(size=(3, 3)) * 1e-2 if k % 2 else None,
        charges=rng.normal(size=8) * 0.1 if k != 1 else None,
        electric_field=rng.normal(size=3) if k % 3 == 0 else None,
        polarization=rng.normal(size=3) if k % 2 == 0 else None,
        hessian=_sym(rng.normal(size=(24, 24))).reshape(8, 3, 8, 3) if k in (1, 4) else None,
        weight=0.5 + k,
        source=("si_boxes.xyz", 10 + k),
    )


@pytest.fixture(scope="module")
def data():
    eth = read_structures(bundled_dataset_path("rmd17_ethanol_train"), index="0:30")
    rng = np.random.default_rng(0)
    mixed = list(eth[:20]) + [_periodic(k, rng) for k in range(6)] + list(eth[20:])
    return mixed


@pytest.fixture(scope="module")
def shard_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "set"
    write_shards(data, out, CUTOFF, shard_size=7)
    return out


def _same(a, b) -> None:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def test_structures_round_trip(data, shard_dir):
    shards = ShardSet(shard_dir, CUTOFF)
    assert len(shards) == len(data) and shards.num_shards == 6
    for i, s, edges in shards.read_items([0, 21, 23, 24, 25, 35]):
        o = data[i]
        assert s.source == o.source and s.where == o.where
        keys = ("numbers", "positions", "cell", "pbc", "forces", "stress", "virials")
        for k in (*keys, "polarization", "hessian"):
            a, b = getattr(o, k), getattr(s, k)
            assert (a is None) == (b is None), k
            if a is not None:
                np.testing.assert_array_equal(a, b)
        for k in ("energy", "charges", "electric_field", "weight", "level"):
            assert (getattr(o, k) is None) == (getattr(s, k) is None), k
        assert len(edges[0]) == shards.n_edges[i]


@pytest.mark.parametrize("shuffle", ["global", "none"])
def test_batches_equal_in_memory(data, shard_dir, shuffle):
    mem = GraphLoader(data, CUTOFF, ZS, batch_size=4, shuffle=shuffle == "global", seed=5)
    shards = ShardSet(shard_dir, CUTOFF)
    disk = StreamingLoader(shards, ZS, batch_size=4, shuffle=shuffle, seed=5, cutoff=CUTOFF)
    assert disk.budgets == mem.budgets and disk.properties == mem.properties
    assert [list(b) for b in disk.plan(2)] == [list(b) for b in mem.plan(2)]
    got = list(disk.epoch_batches(2))
    want = list(mem.epoch_batches(2))
    assert len(got) == len(want) == mem.num_batches(2)
    for a, b in zip(want, got):
        _same(a, b)
    assert "has_charges" in got[0].extras and "electric_field" in got[0].extras
    assert {"polarization", "hessian"} <= set(disk.properties)
    _same(mem.make_batch([3, 22, 1]), disk.make_batch([3, 22, 1]))
    tail = list(disk.epoch_batches(2, start_step=5))  # resume mid-epoch
    for a, b in zip(want[5:], tail):
        _same(a, b)


def test_buffer_shuffle_covers_epoch_with_bounded_memory(shard_dir):
    shards = ShardSet(shard_dir)
    loader = StreamingLoader(shards, ZS, batch_size=3, buffer_size=5, seed=1, prefetch=2)
    orders = [np.concatenate(loader.plan(e)) for e in range(3)]
    for o in orders:
        assert sorted(o.tolist()) == list(range(len(shards)))
    assert not np.array_equal(orders[0], orders[1])
    assert np.array_equal(orders[0], np.concatenate(loader.plan(0)))
    batches = list(loader.epoch_batches(0))
    real = sum(int(b.graph_mask.sum()) for b in batches)
    assert real == len(shards)
    # held structures: the buffer, the rest of one shard (7) and the batch being built
    assert 0 < loader.peak_pending <= 5 + 7 + 3


def test_budget_packing_and_efficiency(shard_dir):
    shards = ShardSet(shard_dir)
    loader = StreamingLoader(shards, ZS, edge_budget=600, multiple=32, seed=0)
    n_b, e_b, g_b = loader.budgets
    assert e_b == 608 and g_b >= 2
    assert (n_b, e_b, g_b) == greedy_caps(
        shards.n_nodes[np.random.default_rng(0).permutation(len(shards))],
        shards.n_edges[np.random.default_rng(0).permutation(len(shards))],
        600,
        32,
    )
    for b in loader.plan(1):
        assert shards.n_edges[b].sum() <= e_b and shards.n_nodes[b].sum() <= n_b - 1
    eff = loader.padding_efficiency(1)
    assert 0.3 < eff["edges"] <= 1.0 and 0 < eff["nodes"] <= 1.0
    total = sum(int(b.edge_mask.sum()) for b in loader.epoch_batches(1))
    assert total == shards.n_edges.sum()
    assert "padding efficiency" in loader.describe()
    with pytest.raises(DataError, match="edge_budget"):
        StreamingLoader(shards, ZS, edge_budget=10)


@pytest.mark.parametrize(
    ("kw", "zs"),
    [
        ({}, ZS),
        ({"scale_type": "rms_forces", "shift_type": "mean_delta_energy_per_atom"}, ZS),
        (
            {"atomic_energies": {1: -13.6, 6: -1030.0, 8: -2040.0, 9: -1.0, 14: -3.0}},
            [1, 6, 8, 9, 14],
        ),
    ],
)
def test_statistics_equal_compute_statistics(data, shard_dir, kw, zs):
    idx = np.arange(1, len(data), 2)
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        want = compute_statistics([data[i] for i in idx], zs, CUTOFF, **kw)
    with warnings.catch_warnings(record=True) as w_disk:
        warnings.simplefilter("always")
        got = shard_statistics(ShardSet(shard_dir), zs, idx, **kw)
    assert [str(x.message) for x in w_disk] == [str(x.message) for x in w_mem]
    assert set(got) == set(want)
    for k, v in want.items():
        if isinstance(v, (str, type(None))) or k in ("warnings", "e0_undetermined"):
            assert got[k] == v, k
        elif k == "e0_span":  # the same row space (projector), the basis may differ
            for bg, bw in zip(got[k], v):
                assert (bg is None) == (bw is None)
                if bg is not None:
                    pg, pw = np.array(bg).T @ np.array(bg), np.array(bw).T @ np.array(bw)
                    np.testing.assert_allclose(pg, pw, atol=1e-10)
        elif k == "e0_isolated":
            assert json.dumps(got[k]) == json.dumps(v), k
        else:
            np.testing.assert_allclose(np.array(got[k], float), np.array(v, float), rtol=1e-10)
    with pytest.raises(DataError, match="element 14 not in the model's atomic_numbers"):
        shard_statistics(ShardSet(shard_dir), [1, 6, 8], idx)


def test_streaming_data_split_matches_random_split(data, shard_dir):
    from tace_jax.data import random_split

    sd = StreamingData(shard_dir, valid_fraction=0.2, seed=3)
    tr, va = random_split(len(data), 0.2, 3)
    assert list(sd.train.indices) == list(tr) and list(sd.valid.indices) == list(va)
    assert sd.train[2].where == data[tr[2]].where and len(sd.train[1:4]) == 3
    m = sd.fill_model({})
    assert m["atomic_numbers"] == ZS and m["num_levels"] == 1
    sd.check_levels(1)
    lines = sd.label_report({"energy": 1.0, "stress": 1.0})
    missing = sum(data[i].stress is None for i in tr)
    assert any(f"{missing} of {len(tr)} train frames have no 'stress'" in x for x in lines)
    assert not any("'energy'" in x for x in lines)


def test_cutoff_mismatch_names_file(shard_dir):
    with pytest.raises(DataError, match=r"manifest.json.*cutoff 4.0 Å.*5.0 Å"):
        ShardSet(shard_dir, cutoff=5.0)
    shards = ShardSet(shard_dir)
    with pytest.raises(DataError, match="cutoff"):
        StreamingLoader(shards, ZS, cutoff=3.0)


def test_bad_shards_name_the_file(data, tmp_path):
    out = tmp_path / "bad"
    write_shards(data[:12], out, CUTOFF, shard_size=6)
    with pytest.raises(DataError, match="already holds shards"):
        write_shards(data[:2], out, CUTOFF)
    shard = out / "shard_00001.h5"
    with h5py.File(shard, "r") as f:
        offset = f["positions"].id.get_chunk_info(0).byte_offset
    with open(shard, "r+b") as fh:  # flip bytes in the positions chunk: checksum error
        fh.seek(offset + 8)
        fh.write(b"\x00\xff" * 16)
    shards = ShardSet(out)
    shards.read(0)  # the intact shard still reads
    with pytest.raises(DataError, match=r"shard_00001.h5: dataset 'positions' is corrupted"):
        shards.read(1)
    shards.close()
    shard.write_bytes(shard.read_bytes()[:300])  # truncated
    with pytest.raises(DataError, match=r"shard_00001.h5: cannot (open|read) shard"):
        ShardSet(out)
    with h5py.File(out / "shard_00000.h5", "r+") as f:
        f.attrs["format_version"] = 99
    (out / "shard_00001.h5").unlink()
    with pytest.raises(DataError, match=r"shard_00000.h5: shard format version 99"):
        ShardSet(out)
    (out / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"manifest.json: not found"):
        ShardSet(out)


def test_cli_preprocess(tmp_path, capsys):
    from tace_jax.cli.main import main

    src = tmp_path / "eth.xyz"
    from ase.io import write

    from tace_jax.data import structure_to_atoms

    eth = read_structures(bundled_dataset_path("rmd17_ethanol_train"), index="0:5")
    write(src, [structure_to_atoms(s) for s in eth], format="extxyz")
    out = tmp_path / "pp"
    assert main(["preprocess", str(src), "--out", str(out), "--cutoff", "3.5"]) == 0
    assert "wrote 5 structures" in capsys.readouterr().out
    shards = ShardSet(out, 3.5)
    s = shards.read_items([4])[0][1]
    assert s.where == f"{src}, frame 4"
    np.testing.assert_allclose(s.forces, eth[4].forces, rtol=1e-7, atol=1e-7)  # extxyz digits
    assert main(["preprocess", str(src), "--out", str(out), "--cutoff", "3.5"]) == 2


def test_device_prefetch_and_state(shard_dir):
    loader = StreamingLoader(
        ShardSet(shard_dir), ZS, batch_size=4, prefetch=1, transform=jax.device_put
    )
    batches = loader.epoch_batches(0)
    first = next(batches)
    assert isinstance(first.positions, jax.Array) and first.budgets == loader.budgets
    batches.close()  # stops the background thread
    loader.set_epoch(1, 7)
    assert loader.state_dict() == {"epoch": 1, "step": 7, "seed": 0}
    assert len(list(loader)) == loader.num_batches(1) - 7 and loader.epoch == 2
    with pytest.raises(DataError, match="seed"):
        loader.load_state_dict({"epoch": 0, "step": 0, "seed": 1})


def test_large_composition_matrix_is_compacted():
    """Above 2048 energies the span comes from the distinct rows: the same projector."""
    from tace_jax.data.shard_data import _compact_rows
    from tace_jax.data.statistics import e0_span

    counts = np.random.default_rng(0).integers(0, 3, (3000, 4)).astype(float)
    counts[:, 3] = counts[:, 0]  # rank deficient: Z=1 and Z=4 always together
    small = _compact_rows(counts)
    assert len(small) < 100
    (a, bad_a), (b, bad_b) = e0_span(counts), e0_span(small)
    assert bad_a == bad_b == [0, 3]
    np.testing.assert_allclose(a.T @ a, b.T @ b, atol=1e-12)
