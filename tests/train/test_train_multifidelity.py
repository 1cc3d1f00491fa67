"""Multi-fidelity training (issue 10, Build 3): files of several levels, per-level statistics and
multi-head replay fine-tuning.

The data are ethanol geometries (bundled rMD17 subset) labelled by two different Morse
potentials (``tace_jax.testing.MorsePotential``) with different per-element energy offsets, one
per fidelity level.
"""

import ase.io
import numpy as np
import pytest

from tace_jax.data import DataError, bundled_dataset_path, read_structures, structure_to_atoms
from tace_jax.inference import Potential
from tace_jax.models import Statistics, TACEConfig
from tace_jax.testing import MorsePotential, tiny_model
from tace_jax.train import ConfigError, config_from_dict
from tace_jax.train.prepare import build_model_config, build_statistics, load_data
from tace_jax.train.replay import add_level, fit_replay, prepare_replay, replay_subset

ZS = (1, 6, 8)
#: per level: Morse parameters and E0 offsets (eV) per element H, C, O
LEVELS = (
    ({"depth": 0.5, "r0": 1.2}, (-13.6, -1029.0, -2041.0)),
    ({"depth": 0.7, "r0": 1.3}, (-13.1, -1027.5, -2043.2)),
)
MODEL = tiny_model()


def label(atoms_list, level, rng=None, jitter=0.0):
    """Copies of ``atoms_list`` with energy/forces of level ``level`` (positions jittered)."""
    params, e0 = LEVELS[level]
    pot = MorsePotential(ZS, cutoff=4.0, dtype="float64", **params)
    out = []
    for a in atoms_list:
        a = a.copy()
        if jitter:
            a.positions = a.positions + rng.normal(scale=jitter, size=a.positions.shape)
        p = pot.predict(a, ("energy", "forces"))
        shift = sum(e0[ZS.index(z)] for z in a.numbers)
        a.info["energy"] = p["energy"] + shift
        a.arrays["forces"] = p["forces"]
        out.append(a)
    return out


def write(path, frames, level_key=None, levels=None):
    for k, a in enumerate(frames):
        a.info.pop("level", None)
        if level_key is not None and levels is not None and levels[k] is not None:
            a.info[level_key] = levels[k]
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def ethanol(n, seed=0):
    frames = read_structures(bundled_dataset_path("rmd17_ethanol_train"), index=f":{n}")
    rng = np.random.default_rng(seed)
    return [structure_to_atoms(s) for s in frames], rng


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mf")
    atoms, rng = ethanol(24)
    lo = label(atoms[:12], 0, rng, 0.02)
    hi = label(atoms[12:], 1, rng, 0.02)
    return {
        "lo": write(d / "lo.xyz", lo),
        "hi": write(d / "hi.xyz", hi),
        "mixed": write(d / "mixed.xyz", lo[:4] + hi[:4], "level", [0] * 4 + [1] * 4),
        "dir": d,
    }


def cfg(**kw):
    base = {"valid_fraction": 0.25, "model": dict(MODEL), "progress": False, "dtype": "float64"}
    return config_from_dict({**base, **kw})


# ------------------------------------------------------------------------------------ data


def test_train_files_give_each_file_its_level_and_infer_num_levels(files):
    c = cfg(train_file=files["lo"], train_files=[{"file": files["hi"], "level": 1}])
    data = load_data(c)
    src = lambda s: s.source[0].rsplit("/", 1)[-1]  # noqa: E731
    for s in (*data.train, *data.valid):
        assert s.level == (1 if src(s) == "hi.xyz" else 0), s.where
    assert {src(s) for s in data.valid} == {"lo.xyz", "hi.xyz"}  # split per file
    assert len(data.train) + len(data.valid) == 24
    assert build_model_config(c, data).num_levels == 2


def test_level_names_and_a_frame_level_key(files):
    c = cfg(
        train_file=files["mixed"],
        train_files=[{"file": files["hi"], "level": "ccsd"}],
        data_options={"levels": {"pbe": 0, "ccsd": 1}},
    )
    data = load_data(c)
    for s in (*data.train, *data.valid):
        expect = 1 if s.source[0].endswith("hi.xyz") or s.source[1] >= 4 else 0
        assert s.level == expect, s.where


def test_a_frame_level_that_contradicts_its_file_level_names_file_and_frame(files):
    atoms, rng = ethanol(5)
    frames = label(atoms, 1)
    path = write(files["dir"] / "bad.xyz", frames, "level", [None, None, None, 0, None])
    c = cfg(train_file=files["lo"], train_files=[{"file": path, "level": 1}])
    with pytest.raises(DataError, match=r"bad.xyz, frame 3: field 'level' is 0 but the file"):
        load_data(c)


def test_a_level_beyond_num_levels_names_file_and_frame(files):
    c = cfg(
        train_file=files["lo"],
        train_files=[{"file": files["hi"], "level": 2}],
        model={**MODEL, "num_levels": 2},
    )
    with pytest.raises(DataError, match=r"hi.xyz, frame \d+: field 'level' is 2 but the model"):
        build_model_config(c, load_data(c))


@pytest.mark.parametrize(
    "entry, msg",
    [
        ({"level": 1}, "'file' .* is required"),
        ({"file": "x.xyz", "level": -1}, "'level' must be an integer >= 0"),
        ({"file": "x.xyz", "level": "gold"}, "'level' must be an integer"),
        ({"file": "x.xyz", "level": 1, "weight": 2}, "unknown keys"),
    ],
)
def test_bad_train_files_entries_are_config_errors(files, entry, msg):
    with pytest.raises(ConfigError, match=r"train_files', entry 0.*" + msg):
        load_data(cfg(train_file=files["lo"], train_files=[entry]))


def test_per_level_statistics_equal_a_numpy_fit_per_level(files):
    c = cfg(
        train_file=files["lo"],
        train_files=[{"file": files["hi"], "level": 1}],
        valid_fraction=0.0,
        scale_type="rms_forces",
        shift_type="mean_delta_energy_per_atom",
    )
    data = load_data(c)
    stats, raw = build_statistics(c, build_model_config(c, data), data)
    assert np.shape(stats.atomic_energies) == (2, 3)
    for m in (0, 1):
        frames = [s for s in data.train if s.level == m]
        counts = np.array([[np.sum(s.numbers == z) for z in ZS] for s in frames], float)
        e = np.array([s.energy for s in frames])
        e0 = np.linalg.lstsq(counts, e, rcond=None)[0]  # ethanol only: min-norm solution
        np.testing.assert_allclose(counts @ np.asarray(stats.atomic_energies[m]), counts @ e0)
        rms = np.sqrt(np.mean(np.concatenate([np.sum(s.forces**2, 1) for s in frames])))
        np.testing.assert_allclose(stats.scale[m], rms)
        shift = np.mean((e - counts @ np.asarray(stats.atomic_energies[m])) / 9)
        np.testing.assert_allclose(stats.shift[m], shift, atol=1e-9)
    assert abs(stats.scale[0][0] - stats.scale[1][0]) > 1e-3  # the two levels differ


def test_training_batches_carry_each_frames_level(files):
    from tace_jax.train.prepare import make_loaders

    c = cfg(train_file=files["lo"], train_files=[{"file": files["hi"], "level": 1}], batch_size=5)
    data = load_data(c)
    model_cfg = build_model_config(c, data)
    assert "level" in model_cfg.input_names and model_cfg.input_limits["level"] == 2
    train, valid, _ = make_loaders(c, model_cfg, data, 1)
    seen = set()
    for idx in train.plan(0):
        g = train.make_batch(idx)
        got = np.asarray(g.extras["level"])[: len(idx)]
        np.testing.assert_array_equal(got, [data.train[i].level for i in idx])
        seen.update(got.tolist())
    assert seen == {0, 1}


# ------------------------------------------------------------------------------- add_level


def _predict(pot, atoms, level):
    out = pot.predict(atoms, ("energy", "forces"), level=level)
    return np.array([o["energy"] for o in out]), np.concatenate([o["forces"] for o in out])


@pytest.mark.slow  # three compiles: ~20 s on the shared machine
@pytest.mark.parametrize("levels", [1, 2])
def test_add_level_copies_the_source_level_exactly(files, levels, key):
    model = TACEConfig(atomic_numbers=ZS, **{**MODEL, "radial_hidden": (8,)}, num_levels=levels)
    if levels == 2:  # multi-head readouts and a level embedding table
        model = TACEConfig.from_dict(
            {
                **model.to_dict(),
                "use_multi_head": True,
                "invariant_embeddings": [{"name": "level", "num_embeddings": 2}],
            }
        )
    rng = np.random.default_rng(1)
    stats = Statistics(
        rng.normal(size=(levels, 3)), 1 + rng.random((levels, 3)), rng.normal(size=(levels, 3))
    )
    old = Potential.init(model, stats, key, dtype="float64")
    source = levels - 1
    cfg2, stats2, variables = add_level(old.config, old.statistics, old.variables, source)
    new = Potential(cfg2, stats2, variables, dtype="float64")
    assert cfg2.num_levels == levels + 1 and cfg2.use_multi_head
    atoms = ase.io.read(files["mixed"], ":")
    e_src, f_src = _predict(old, atoms, source if levels > 1 else 0)
    e_new, f_new = _predict(new, atoms, levels)
    np.testing.assert_allclose(e_new, e_src, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(f_new, f_src, rtol=1e-10, atol=1e-10)
    for m in range(levels):  # the old levels are unchanged
        np.testing.assert_allclose(_predict(new, atoms, m)[0], _predict(old, atoms, m)[0])
    if levels == 1:  # a single-level model accepts only level 0
        with pytest.raises(DataError, match=r"structure 0: input 'level' = 1 is outside"):
            old.predict(atoms, ("energy",), level=1)
    with pytest.raises(ValueError, match="not a level"):
        add_level(old.config, old.statistics, old.variables, levels)


def test_replay_subset_is_seeded_and_disjoint():
    items = list(range(50))
    a, rest = replay_subset(items, 0.2, seed=3)
    assert len(a) == 10 and sorted(a + rest) == items and a == sorted(a)
    assert replay_subset(items, 0.2, seed=3)[0] == a != replay_subset(items, 0.2, seed=4)[0]
    assert len(replay_subset(items, 0.0001)[0]) == 1


# --------------------------------------------------------------------------------- fitting


def _train_cfg(out, **kw):
    return {
        "valid_fraction": 0.25,
        "batch_size": 4,
        "lr": 0.01,
        "scheduler": "constant",
        "dtype": "float64",
        "progress": False,
        "ema_decay": None,
        "scale_type": "rms_forces",
        "shift_type": "mean_delta_energy_per_atom",
        "output_dir": str(out),
        **kw,
    }


@pytest.mark.slow
def test_replay_new_level_starts_as_level_0_and_old_level_moves_little(files):
    from tace_jax.train import fit

    d = files["dir"]
    base = fit(_train_cfg(d / "base", train_file=files["lo"], model=dict(MODEL), max_steps=30))
    old_atoms, new_atoms = ase.io.read(files["lo"], ":"), ase.io.read(files["hi"], ":")
    ref_old = np.array([a.get_potential_energy() for a in old_atoms])
    ref_new = np.array([a.get_potential_energy() for a in new_atoms])
    replay = _train_cfg(
        d / "replay",
        replay_model=str(base.model_path),
        train_file=files["hi"],
        replay_file=files["lo"],
        replay_fraction=0.5,
        new_level_from=0,
        new_level_e0="copy",
        max_steps=40,
        lr=0.003,
        energy_weight=10.0,
        forces_weight=1.0,
    )
    # step 0 (copy): the new level is level 0 exactly, and level 0 is the base model
    setup, variables = prepare_replay(config_from_dict(replay))
    start = Potential(setup.model_cfg, setup.statistics, variables, dtype="float64")
    e_base = _predict(base.potential, old_atoms + new_atoms, 0)[0]
    np.testing.assert_allclose(_predict(start, old_atoms + new_atoms, 1)[0], e_base, rtol=1e-12)
    np.testing.assert_allclose(_predict(start, old_atoms + new_atoms, 0)[0], e_base, rtol=1e-12)
    # refit: the new level differs from level 0 by the refitted E0 only
    replay["new_level_e0"] = "refit"
    setup, variables = prepare_replay(config_from_dict(replay))
    start = Potential(setup.model_cfg, setup.statistics, variables, dtype="float64")
    shift = _predict(start, new_atoms, 1)[0] - _predict(start, new_atoms, 0)[0]
    de0 = np.subtract(setup.statistics.atomic_energies[1], setup.statistics.atomic_energies[0])
    counts = np.array([[np.sum(a.numbers == z) for z in ZS] for a in new_atoms])
    np.testing.assert_allclose(shift, counts @ de0, rtol=1e-10)
    mae = lambda pot, atoms, lv, ref: np.abs(_predict(pot, atoms, lv)[0] - ref).mean()  # noqa: E731
    old_before, new_before = mae(start, old_atoms, 0, ref_old), mae(start, new_atoms, 1, ref_new)
    res = fit_replay(replay)
    assert res.steps == 40 and res.potential.config.num_levels == 2
    new_after = mae(res.potential, new_atoms, 1, ref_new)
    old_after = mae(res.potential, old_atoms, 0, ref_old)
    print(f"new level {new_before:.3f} -> {new_after:.3f} eV; old level {old_before:.3f} -> "
          f"{old_after:.3f} eV")  # fmt: skip
    assert new_after < 0.9 * new_before  # the new level learned level 1 ...
    assert old_after < 2.5 * old_before  # ... while level 0 stayed within a few meV/atom
