"""Schemathesis fuzzes the service from its own OpenAPI schema, in process (ASGI), on the small trained model.

Every operation gets valid (positive) and invalid (negative) bodies, parameters and ids; no answer may be a
5xx, and every answer must conform to the schema (documented status code, content type, headers and body).
Some generated session and movie ids of valid cases are swapped for real ones, so conversations and feedback are
reached and not only their 404s. The examples per operation are bounded and derandomized: the run stays well
under a minute.

The schema's strategies are driven with hypothesis directly (``APIOperation.as_strategy``):
schemathesis' lazy pytest integration (``from_fixture``) sets a private pytest attribute that pytest 9 dropped.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from qamrec.config import ServeConfig  # noqa: E402
from qamrec.serve.app import create_app  # noqa: E402
from qamrec.serve.store import SQLiteStore  # noqa: E402

pytestmark = pytest.mark.slow

#: examples per operation and generation mode (``QAMREC_FUZZ_EXAMPLES`` asks for more, outside CI)
MAX_EXAMPLES = int(os.environ.get("QAMREC_FUZZ_EXAMPLES", "25"))
#: every operation of the schema (checked against it below, so a new route is not left unfuzzed)
OPERATIONS = (
    "GET /health", "POST /recommend", "POST /sessions", "GET /sessions/{sid}", "POST /sessions/{sid}/messages",
    "POST /sessions/{sid}/feedback", "GET /movies/{movie_id}", "GET /posters/{movie_id}",
)
#: the operations with an input that can be invalid (the others take nothing: no negative case exists)
NO_INPUT = ("GET /health", "POST /sessions")
CASES = [(op, mode) for op in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode == GenerationMode.POSITIVE or op not in NO_INPUT]


@pytest.fixture(scope="module")
def fuzz_app(small_engine, tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = SQLiteStore(tmp_path_factory.mktemp("fuzz") / "sessions.sqlite3")
    app = create_app(small_engine, store, ServeConfig(max_inflight=64, max_queue=64))
    app.state.real_sessions = [store.create() for _ in range(2)]
    app.state.real_movies = [int(m) for m in small_engine.cand_movie[:5]]
    return app


@pytest.fixture(scope="module")
def api_schema(fuzz_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


def _with_real_ids(case: Any, app: Any) -> None:
    """Swap about half of the generated ids for real ones (deterministically, from the generated value)."""
    params = case.path_parameters or {}
    if isinstance(params.get("sid"), str) and len(params["sid"]) % 2 == 0:
        params["sid"] = app.state.real_sessions[len(params["sid"]) % 4 // 2]
    if isinstance(params.get("movie_id"), int) and params["movie_id"] % 2 == 0:
        params["movie_id"] = app.state.real_movies[params["movie_id"] % 5]
    body = case.body
    movie = body.get("movie_id") if isinstance(body, dict) else None
    if isinstance(movie, int) and not isinstance(movie, bool) and 0 <= movie <= 2**53 and movie % 2 == 0:
        body["movie_id"] = app.state.real_movies[movie % 5]


def test_every_operation_is_fuzzed(api_schema: Any) -> None:
    found = {r.ok().label for r in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{op} {mode.value}" for op, mode in CASES])
def test_api_conforms_to_its_schema_and_never_5xx(api_schema: Any, fuzz_app: Any, label: str,
                                                  mode: GenerationMode) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    statuses: dict[int, int] = {}

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        if mode == GenerationMode.POSITIVE:
            _with_real_ids(case, fuzz_app)
        titles = isinstance(case.body, dict) and (case.body.get("liked") or case.body.get("disliked"))
        # a schema-valid title the catalog cannot resolve is a documented 422 (with the closest titles)
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance] if titles else None)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (response.status_code, response.text[:500])

    fuzz()
    assert statuses, f"{label}: no request was made"
