"""Schemathesis against the API's own OpenAPI schema: generated requests to /v1/score and /v1/embed,
valid and invalid, never get a 5xx, and what comes back conforms to the schema.

Bounded: a fixed number of examples per route and mode, no deadline per example, a tiny model
trained a few steps.
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from genoseq.api import Limits, create_app
from genoseq.pipelines.pretrain import pretrain

EXAMPLES = 40


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    run = tmp_path_factory.mktemp("api_fuzz") / "run"
    pretrain(out=str(run), model={"d_model": 16, "pattern": "MA", "n_heads": 2, "d_state": 8, "headdim": 8},
             window={"length": 64, "batch_size": 2, "windows_per_epoch": 8, "max_val_windows": 1},
             trainer={"max_steps": 4, "val_check_interval": 4, "enable_progress_bar": False})
    app = create_app(model=str(run / "model"), device="cpu", chunk_size=256, context=64,
                     limits=Limits(max_sequence_length=2000, max_sequences=16))
    with TestClient(app) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, c.get("/readyz").json()
            time.sleep(0.05)
        yield c


@pytest.fixture(scope="module")
def schema(client):
    return schemathesis.openapi.from_dict(client.get("/openapi.json").json())


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("path", ["/v1/score", "/v1/embed"])
def test_no_server_errors(client, schema, path, mode):
    operation = schema[path]["POST"]
    seen: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        headers = {k: str(v) for k, v in (case.headers or {}).items()}
        if isinstance(case.body, (bytes, str)):  # negative cases include bodies that are not JSON
            headers.setdefault("content-type", case.media_type or "application/json")
            body = {"content": case.body}
        else:
            body = {"json": case.body}
        response = client.request(case.method, case.formatted_path, headers=headers, **body)
        seen.append(response.status_code)
        assert response.status_code < 500, (case.body, response.text)
        if response.status_code == 200:
            case.validate_response(response)  # the body conforms to the response schema

    check()
    assert len(seen) >= 10
    if mode is GenerationMode.POSITIVE:
        assert seen.count(200) >= len(seen) // 2, seen  # valid requests are mostly answered
    else:
        assert all(400 <= status < 500 for status in seen), seen
