"""extxyz layout errors name the frame and the line (atom-count lines scanned first)."""

import numpy as np
import pytest

from tace_jax.data import read_structures
from tace_jax.data.errors import DataError
from tace_jax.data.readers import scan_xyz


def _lines(n_frames=8, n_atoms=3):
    rng = np.random.default_rng(0)
    out = []
    for k in range(n_frames):
        out += [
            str(n_atoms),
            f'Properties=species:S:1:pos:R:3:forces:R:3 energy={-k - 1.5} pbc="F F F"',
        ]
        for i in range(n_atoms):
            x = rng.random(3) + 2.0 * i
            out.append("H " + " ".join(f"{v:.6f}" for v in (*x, 0.0, 0.0, 0.0)))
    return out


def _write(tmp_path, lines, name="d.xyz"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def _count_line(frame, n_atoms=3):
    return frame * (n_atoms + 2)  # 0-based index of frame's atom-count line


def test_scan_good_file(tmp_path):
    p = _write(tmp_path, _lines())
    assert scan_xyz(str(p)) == [1 + 5 * k for k in range(8)]
    assert len(read_structures(p)) == 8


@pytest.mark.parametrize(
    "count, match",
    [
        (
            "4",
            r"frame 5: malformed file, line 31: atom-count line 26 says 4 atoms but line 31 "
            r"looks like the next frame's atom-count line \(only 3 atom lines\)",
        ),
        (
            "2",
            r"frame 6: malformed file, line 30: expected an atom-count line, got 'H .*"
            r"frame 5's atom-count line 26 says 2 atoms",
        ),
        ("three", r"frame 5: malformed file, line 26: expected an atom-count line, got 'three'"),
    ],
)
def test_wrong_atom_count_in_frame_5(tmp_path, count, match):
    lines = _lines()
    lines[_count_line(5)] = count
    p = _write(tmp_path, lines)
    with pytest.raises(DataError, match=match) as err:
        read_structures(p)
    assert str(err.value).startswith(f"{p}, frame ")


def test_truncated_and_short_lines(tmp_path):
    lines = _lines()
    p = _write(tmp_path, lines[:-2], "trunc.xyz")
    with pytest.raises(
        DataError,
        match=r"trunc.xyz, frame 7: malformed file, line 39: atom-count line 36 says 3 atoms but "
        r"the file ends after 1 atom lines \(truncated\?\)",
    ):
        read_structures(p)
    bad = list(lines)
    bad[_count_line(2) + 3] = bad[_count_line(2) + 3].rsplit(" ", 2)[0]  # 2 columns lost
    p = _write(tmp_path, bad, "short.xyz")
    with pytest.raises(
        DataError, match=r"short.xyz, frame 2: .*line 14: atom 1 has 5 columns, expected 7"
    ):
        read_structures(p)
    p = _write(tmp_path, lines[:10] + [""] + lines[10:], "blank.xyz")
    with pytest.raises(DataError, match=r"blank.xyz, frame 2: .*line 11: blank line"):
        read_structures(p)


def test_parse_error_names_count_line(tmp_path):
    lines = _lines()
    row = lines[_count_line(4) + 2].split()
    row[1] = "x.y"  # not a number: ase fails, the layout is fine
    lines[_count_line(4) + 2] = " ".join(row)
    p = _write(tmp_path, lines)
    with pytest.raises(
        DataError, match=r"frame 4: malformed file \(atom-count line 21\), could not parse"
    ):
        read_structures(p)


def test_compressed_file_scanned(tmp_path):
    import gzip

    lines = _lines()
    lines[_count_line(5)] = "4"
    p = tmp_path / "d.xyz.gz"
    with gzip.open(p, "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"d.xyz.gz, frame 5: malformed file, line 31"):
        read_structures(p)
