"""Fault injection on data files: corrupt, truncated, NaN labels, missing labels, E0 fits.

Every case asserts the message: it names the file, the frame and the field or line.
"""

import gzip
import lzma
import warnings

import numpy as np
import pytest

from tace_jax.data import DataError, bundled_dataset_path, read_structures
from tace_jax.train.config import ConfigError, config_from_dict
from tace_jax.train.prepare import write_run_files
from tace_jax.train.setup import setup_training

MODEL = {
    "cutoff": 3.0,
    "num_layers": 1,
    "correlation": 2,
    "num_channel": 4,
    "lmax_node": 1,
    "lmax_edge": 1,
    "radial_hidden": [8],
    "zbl": False,
}


def _frame(k, energy=True, forces=True, symbols=("O", "H", "H"), nan=None):
    props = "species:S:1:pos:R:3" + (":forces:R:3" if forces else "")
    e = "nan" if nan == "energy" else f"{-14.0 - 0.01 * k}"
    head = f'Properties={props} {"energy=" + e + " " if energy else ""}pbc="F F F"'
    rows = []
    for i, s in enumerate(symbols):
        f = " nan 0.0 0.0" if (nan == "forces" and i == 1) else " 0.1 -0.1 0.0"
        rows.append(f"{s} {0.96 * i:.4f} {0.3 * i + 0.01 * k:.4f} 0.0" + (f if forces else ""))
    return [str(len(symbols)), head, *rows]


def _write(path, frames):
    path.write_text("\n".join(line for f in frames for line in f) + "\n")
    return path


def test_truncated_mid_line(tmp_path):
    p = _write(tmp_path / "a.xyz", [_frame(k) for k in range(6)])
    data = p.read_bytes()
    cut = tmp_path / "cut.xyz"
    cut.write_bytes(data[: len(data) - 20])  # the last atom line loses its tail
    with pytest.raises(DataError, match=r"cut.xyz, frame 5: malformed file, line 30: atom 2 has"):
        read_structures(cut)


def test_binary_garbage(tmp_path):
    p = tmp_path / "garbage.xyz"
    p.write_bytes(b"\x00\xff\x13garbage\n" * 5)
    with pytest.raises(
        DataError, match=r"garbage.xyz, frame 0: malformed file, line 1: expected an"
    ):
        read_structures(p)


@pytest.mark.parametrize("suffix, opener", [(".xz", lzma.open), (".gz", gzip.open)])
def test_truncated_compressed(tmp_path, suffix, opener):
    frames = [_frame(k) for k in range(40)]
    p = tmp_path / f"a.xyz{suffix}"
    with opener(p, "wt") as f:
        f.write("\n".join(line for fr in frames for line in fr) + "\n")
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(DataError, match=rf"a.xyz\{suffix}, frame 0: malformed compressed file"):
        read_structures(p)


def test_corrupt_npz(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(
        good, z=np.array([8, 1, 1]), R=np.zeros((2, 3, 3)), E=np.zeros(2), F=np.zeros((2, 3, 3))
    )
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataError, match=r"bad.npz, frame 0: malformed npz"):
        read_structures(bad)


@pytest.mark.parametrize("field", ["energy", "forces"])
def test_nan_labels(tmp_path, field):
    frames = [_frame(k, nan=field if k == 3 else None) for k in range(5)]
    p = _write(tmp_path / "nan.xyz", frames)
    with pytest.raises(
        DataError, match=rf"nan.xyz, frame 3: field '{field}'.*(non-finite|NaN|nan)"
    ):
        read_structures(p)


def _cfg(tmp_path, train, **kw):
    return config_from_dict(
        {
            "train_file": str(train),
            "valid_fraction": 0.0,
            "model": MODEL,
            "batch_size": 2,
            "output_dir": str(tmp_path / "run"),
            "progress": False,
            **kw,
        }
    )


def _setup(cfg):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        setup = setup_training(cfg)
    return setup, [str(x.message) for x in w]


def test_missing_labels_counted_in_log(tmp_path, capsys):
    frames = [_frame(k, energy=k not in (1, 4), forces=k != 2) for k in range(6)]
    cfg = _cfg(tmp_path, _write(tmp_path / "partial.xyz", frames))
    setup, _ = _setup(cfg)
    notes = setup.raw_statistics["warnings"]
    assert any(
        "2 of 6 train frames have no 'energy' (first: " in n and "frame 1)" in n for n in notes
    )
    assert any("1 of 6 train frames have no 'forces'" in n for n in notes)
    write_run_files(tmp_path / "run", cfg, setup.model_cfg, setup.raw_statistics)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "warning: labels: 2 of 6 train frames have no 'energy'" in log
    assert "require_labels" in log and "have no 'forces'" in capsys.readouterr().out


def test_require_labels_makes_it_an_error(tmp_path):
    frames = [_frame(k, energy=k != 4) for k in range(6)]
    cfg = _cfg(tmp_path, _write(tmp_path / "partial.xyz", frames), require_labels=["energy"])
    with pytest.raises(
        DataError, match=r"partial.xyz, frame 4: field 'energy' is missing \(required\)"
    ):
        setup_training(cfg)


def test_single_composition_warns_at_training(tmp_path):
    cfg = _cfg(
        tmp_path,
        bundled_dataset_path("rmd17_ethanol_train"),
        data_options={"index": "0:10"},
    )
    setup, msgs = _setup(cfg)
    e0_notes = [m for m in msgs if "rank deficient" in m]
    assert e0_notes and "H (Z=1), C (Z=6), O (Z=8) is not determined" in e0_notes[0]
    assert setup.statistics.e0_span is not None
    write_run_files(tmp_path / "run", cfg, setup.model_cfg, setup.raw_statistics)
    assert "is not determined" in (tmp_path / "run" / "train.log").read_text()


def test_e0s_file_in_training(tmp_path):
    iso = _write(
        tmp_path / "iso_atoms.xyz",
        [
            ["1", 'Properties=species:S:1:pos:R:3 energy=-13.587 pbc="F F F"', "H 0 0 0"],
            ["1", 'Properties=species:S:1:pos:R:3 energy=-2041.98 pbc="F F F"', "O 0 0 0"],
        ],
    )
    train = _write(tmp_path / "water.xyz", [_frame(k) for k in range(4)])
    setup, msgs = _setup(_cfg(tmp_path, train, e0s=str(iso)))
    assert not [m for m in msgs if "rank deficient" in m]
    assert setup.statistics.atomic_energies[0] == (-13.587, -2041.98)
    assert setup.statistics.e0_span is None
    with pytest.raises(
        ConfigError, match=r"config key 'e0s': '.*nope.xyz': isolated-atoms file not found"
    ):
        setup_training(_cfg(tmp_path, train, e0s=str(tmp_path / "nope.xyz")))
    with pytest.raises(
        ConfigError, match=r"config key 'e0s': .*water.xyz, frame 0: e0s file frame has 3"
    ):
        setup_training(_cfg(tmp_path, train, e0s=str(train)))
    with pytest.raises(DataError, match=r"atomic_energies: no E0 given for element 8"):
        setup_training(_cfg(tmp_path, train, e0s={1: -13.6}))


def test_weighted_response_label_never_present_is_reported(tmp_path):
    """A response term with a weight but a label no frame has (a wrong ``<property>_key``) is
    reported, naming the label and the first frame."""
    from types import SimpleNamespace

    from tace_jax.train.prepare import label_report

    frames = [_frame(k) for k in range(3)]
    structures = read_structures(_write(tmp_path / "plain.xyz", frames))
    cfg = _cfg(tmp_path, tmp_path / "plain.xyz", born_effective_charges_weight=1.0)
    lines = label_report(cfg, SimpleNamespace(train=structures, valid=[]))
    assert any(
        "3 of 3 train frames have no 'born_charges'" in n and "plain.xyz, frame 0" in n
        for n in lines
    ), lines
    assert not any("'dipole'" in n for n in lines)  # weight 0: not reported
    cfg = _cfg(tmp_path, tmp_path / "plain.xyz")
    assert not any(
        "born_charges" in n for n in label_report(cfg, SimpleNamespace(train=structures, valid=[]))
    )
