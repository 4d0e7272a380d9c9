import json
from pathlib import Path

import pytest

from qamrec.errors import DataFormatError
from qamrec.io import atomic_path, atomic_write_json, iter_jsonl, read_json, sha256_file


def test_atomic_path_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "t.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary file left


def test_atomic_file_gets_usual_mode(tmp_path: Path) -> None:
    import os

    target = tmp_path / "m.json"
    atomic_write_json(target, [])
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_sha256(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_iter_jsonl_names_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"a": 1}\n\n{"a": 2}\n{"a": \n')
    with pytest.raises(DataFormatError, match=r"d\.jsonl, line 4: invalid JSON") as e:
        list(iter_jsonl(p))
    assert e.value.line == 4


def test_iter_jsonl_bad_encoding(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(json.dumps({"a": "x"}).encode() + b"\n" + b'{"a": "\xff"}\n')
    with pytest.raises(DataFormatError, match="line 2: not valid UTF-8"):
        list(iter_jsonl(p))
