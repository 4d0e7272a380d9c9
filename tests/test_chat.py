"""``qamrec chat`` scripted through stdin: in-process on the small model, and against a running service."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = "I want a scary movie\n/like 1\n/pick 1\n/dislike 2\n/like 99\n/frobnicate\n/new\nsomething funny\n/quit\n"


def _invoke(args: list[str], text: str):
    from typer.testing import CliRunner

    from qamrec.cli import app

    return CliRunner().invoke(app, args, input=text)


def _replies(output: str) -> list[str]:
    return [line.split("qamrec>", 1)[1].strip() for line in output.splitlines() if "qamrec>" in line]


def test_chat_in_process(small_run: Path, prepared_home: Path, small_run_settings: list[str], tmp_path: Path):
    sets = [a for s in [*small_run_settings, f"serve.store=sqlite:///{tmp_path / 'chat.sqlite3'}"]
            for a in ("--set", s)]
    res = _invoke(["--home", str(prepared_home), *sets, "chat", "--run", str(small_run), "--k", "3"], SCRIPT)
    assert res.exit_code == 0, res.output
    replies = _replies(res.output)
    # a reply to each message and each feedback: scary, like, pick, dislike, then after /new something funny
    assert len(replies) == 5, res.output
    assert replies[1].startswith(("Glad you liked", "Great, more like", "Noted: you liked"))
    assert replies[2].startswith(("Sure, more", "Good call:", "Okay,"))
    assert replies[3].startswith(("Got it, not", "Okay, no more like", "Fair enough,"))
    assert len(set(replies)) == 5
    assert "no movie 99 (1..3)" in res.output and "unknown command '/frobnicate'" in res.output
    assert "starting over" in res.output
    from qamrec.serve.store import SQLiteStore

    store = SQLiteStore(tmp_path / "chat.sqlite3")
    assert store.count("sessions") == 2 and store.count("feedback") == 3


def test_chat_against_a_service(small_engine, serve_app, tmp_path: Path):
    from qamrec.serve.app import create_app
    from qamrec.serve.store import SQLiteStore

    with serve_app(create_app(small_engine, SQLiteStore(tmp_path / "s.sqlite3"))) as url:
        res = _invoke(["chat", "--url", url], "a funny heist movie\n/seen 1\n")
    assert res.exit_code == 0, res.output
    replies = _replies(res.output)
    assert len(replies) == 2 and replies[1].startswith(("You've seen", "Since you've seen")), res.output
