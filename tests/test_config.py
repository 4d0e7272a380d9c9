from pathlib import Path

import pytest

from qamrec.config import load_config
from qamrec.errors import QamrecError


def test_env_and_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QAMREC_HOME", str(tmp_path / "h"))
    cfg = load_config(["data.verify=false", "seed=7"])
    assert cfg.home == tmp_path / "h"
    assert cfg.raw_dir == tmp_path / "h" / "raw"
    assert cfg.data.verify is False and cfg.seed == 7


def test_default_home_is_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QAMREC_HOME", raising=False)
    assert load_config().home == Path("~/.cache/qamrec").expanduser()


@pytest.mark.parametrize(
    "override, message",
    [("nokey", "expected key=value"), ("data.nope=1", "unknown config key"), ("seed=abc", "seed"),
     ("data.title_match_threshold=3", "title_match_threshold")],
)
def test_bad_overrides_are_named(override: str, message: str) -> None:
    with pytest.raises(QamrecError, match=message):
        load_config([override])
