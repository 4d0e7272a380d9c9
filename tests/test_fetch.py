import shutil
from pathlib import Path

import pytest

from qamrec.data.fetch import fetch, fetched_digests
from qamrec.errors import DigestMismatchError, MissingDataError, QamrecError
from qamrec.io import sha256_file


def _copy_dataset(shared: Path, dst: Path, sub: str) -> None:
    shutil.copytree(shared / sub, dst / sub)


def test_fetch_from_folder_verifies_and_skips_unchanged(shared_data: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    r1 = fetch("movielens-small", raw, source=shared_data)
    assert sorted(r1.copied) == sorted(f"movielens/ml-latest-small/{n}" for n in
                                       ("README.txt", "links.csv", "movies.csv", "ratings.csv", "tags.csv"))
    assert sha256_file(raw / "movielens/ml-latest-small/ratings.csv") == \
        sha256_file(shared_data / "movielens/ml-latest-small/ratings.csv")
    assert set(fetched_digests(raw)) == set(r1.copied)
    r2 = fetch("movielens-small", raw, source=shared_data)
    assert r2.copied == [] and len(r2.unchanged) == 5


def test_partial_dataset_names_missing_files(shared_data: Path, tmp_path: Path) -> None:
    r = fetch("movielens-32m", tmp_path / "raw", source=shared_data)
    assert r.copied == ["movielens/ml-32m/movies.csv"]
    assert set(r.missing) == {"movielens/ml-32m/ratings.csv", "movielens/ml-32m/tags.csv", "movielens/ml-32m/links.csv"}
    assert "32,000,204" in r.missing["movielens/ml-32m/ratings.csv"]


def test_corrupted_source_is_refused_and_nothing_written(shared_data: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _copy_dataset(shared_data, src, "movielens/ml-latest-small")
    ratings = src / "movielens/ml-latest-small/ratings.csv"
    data = bytearray(ratings.read_bytes())
    data[100] ^= 0xFF  # one flipped byte
    ratings.write_bytes(bytes(data))
    raw = tmp_path / "raw"
    with pytest.raises(DigestMismatchError, match="ratings.csv: SHA256 mismatch"):
        fetch("movielens-small", raw, source=src)
    assert not (raw / "movielens/ml-latest-small/ratings.csv").exists()
    assert not list((raw / "movielens/ml-latest-small").glob(".*tmp*"))


def test_truncated_source_is_refused_and_previous_copy_kept(shared_data: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    fetch("movielens-small", raw, source=shared_data)
    good = sha256_file(raw / "movielens/ml-latest-small/tags.csv")
    src = tmp_path / "src"
    _copy_dataset(shared_data, src, "movielens/ml-latest-small")
    tags = src / "movielens/ml-latest-small/tags.csv"
    tags.write_bytes(tags.read_bytes()[:1000])
    with pytest.raises(DigestMismatchError):
        fetch("movielens-small", raw, source=src)
    assert sha256_file(raw / "movielens/ml-latest-small/tags.csv") == good


def test_missing_required_file_and_bad_names(shared_data: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _copy_dataset(shared_data, src, "movielens/ml-latest-small")
    (src / "movielens/ml-latest-small/movies.csv").unlink()
    with pytest.raises(MissingDataError, match="movies.csv: required file of dataset 'movielens-small'"):
        fetch("movielens-small", tmp_path / "raw", source=src)
    with pytest.raises(QamrecError, match="unknown dataset 'nope'"):
        fetch("nope", tmp_path / "raw", source=src)
    with pytest.raises(QamrecError, match="not a folder"):
        fetch("movielens-small", tmp_path / "raw", source=tmp_path / "absent")


def test_posters_checked_against_manifest(shared_data: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "posters").mkdir(parents=True)
    names = sorted(p.name for p in (shared_data / "posters").glob("*.jpg"))[:3]
    lines = [ln for ln in (shared_data / "posters.SHA256SUMS").read_text().splitlines() if ln.split()[-1] in names]
    for n in names:
        shutil.copy(shared_data / "posters" / n, src / "posters" / n)
    (src / "posters.SHA256SUMS").write_text("\n".join(lines) + "\n")
    from qamrec.data import registry

    spec = registry.get_dataset("posters")
    monkey = spec.model_copy(update={"files": (registry.FileSpec(path="posters.SHA256SUMS"),)})
    registry.registry()["posters"] = monkey
    try:
        r = fetch("posters", tmp_path / "raw", source=src)
        assert sorted(r.copied) == sorted(["posters.SHA256SUMS"] + [f"posters/{n}" for n in names])
        (src / "posters" / names[0]).write_bytes(b"not a jpeg")
        with pytest.raises(DigestMismatchError, match=names[0]):
            fetch("posters", tmp_path / "raw2", source=src)
    finally:
        registry.registry()["posters"] = spec
