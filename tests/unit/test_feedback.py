"""User feedback: validation, records in a real state store, the API routes, and the feedback_candidates asset."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import uuid

import dagster as dg
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from agents.feedback_api import MAX_BODY_BYTES, register_feedback_routes
from agents.records import AnswerRecords
from assets.evaluation import feedback_candidates
from assets.evaluation.state import (
    FEEDBACK_RATE_PNG,
    latest_feedback_rate,
    read_feedback_candidates,
    read_feedback_daily,
    set_feedback_candidate_status,
)
from core.feedback import (
    MAX_COMMENT_CHARS,
    InvalidFeedback,
    candidate_id,
    daily_rollup,
    golden_candidate,
    is_negative,
    normalize_feedback,
)
from resources.state_store import LocalStateStore

DAY = 86400.0
T0 = dt.datetime(2025, 3, 10, 12, tzinfo=dt.timezone.utc).timestamp()  # "today" for the records' clock
AID = "a" * 32
TID = "b" * 32


def answer(answer_id: str | None = None, trace_id: str | None = None, question: str = "What is sepsis?", **extra):
    return {
        "answer_id": answer_id or uuid.uuid4().hex,
        "trace_id": trace_id or uuid.uuid4().hex,
        "question": question,
        "answer": "A dysregulated host response to infection [1].",
        "citations": [{"n": 1, "id": "pmid-1#0", "title": "Sepsis", "origin": "kb", "url": None}],
        "relevance": 0.82,
        "route": "knowledge_base",
        "llm_calls": 1,
        "tokens": {"prompt": 120, "completion": 30},
        "timings_ms": {"total": 812.0},
        "notes": [],
        "verdict": "grounded",
        "conversation_id": None,
        "lineage": {
            "index_generation": "arctic_embed_s__abc",
            "chunker_version": "c1",
            "embedding_model": "arctic-embed-s",
            "llm": "qwen-1.5b",
            "prompt_version": "p3",
        },
        **extra,
    }


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    return LocalStateStore(root=str(tmp_path / "state"))


@pytest.fixture
def records(store):
    return AnswerRecords(store, clock=Clock(T0))


# ------------------------------------------------------------------ core: validation and the pure helpers


def test_normalize_fills_thumbs_and_score_from_each_other():
    assert normalize_feedback({"answer_id": AID, "thumbs": "up"}) == {
        "answer_id": AID,
        "trace_id": None,
        "score": 5,
        "thumbs": "up",
        "comment": "",
    }
    assert normalize_feedback({"trace_id": TID.upper(), "thumbs": "down"})["score"] == 1
    assert normalize_feedback({"trace_id": TID.upper(), "thumbs": "down"})["trace_id"] == TID
    assert normalize_feedback({"answer_id": AID, "score": 4})["thumbs"] == "up"
    assert normalize_feedback({"answer_id": AID, "score": 2})["thumbs"] == "down"
    assert normalize_feedback({"answer_id": AID, "score": 3})["thumbs"] == "neutral"
    both = normalize_feedback(
        {"answer_id": AID, "trace_id": TID, "thumbs": "down", "score": 2, "comment": "  wrong \n"}
    )
    assert (both["score"], both["thumbs"], both["comment"]) == (2, "down", "wrong")
    assert normalize_feedback({"answer_id": AID, "score": 3, "thumbs": "up"})["thumbs"] == "up"
    assert normalize_feedback({"answer_id": AID, "score": 1, "comment": "x" * MAX_COMMENT_CHARS})["comment"]


@pytest.mark.parametrize(
    ("payload", "param", "message"),
    [
        ({"thumbs": "up"}, "answer_id", "answer_id or trace_id is required"),
        ({"answer_id": "", "trace_id": None, "thumbs": "up"}, "answer_id", "answer_id or trace_id is required"),
        ({"answer_id": "../../etc/passwd", "thumbs": "up"}, "answer_id", "32-character hex"),
        ({"answer_id": AID, "trace_id": 42, "thumbs": "up"}, "trace_id", "32-character hex"),
        ({"answer_id": AID}, "thumbs", "thumbs or score is required"),
        ({"answer_id": AID, "comment": "no rating"}, "thumbs", "thumbs or score is required"),
        ({"answer_id": AID, "thumbs": "sideways"}, "thumbs", '"up" or "down"'),
        ({"answer_id": AID, "score": 0}, "score", "integer from 1 to 5"),
        ({"answer_id": AID, "score": 6}, "score", "integer from 1 to 5"),
        ({"answer_id": AID, "score": 4.5}, "score", "integer from 1 to 5"),
        ({"answer_id": AID, "score": "5"}, "score", "integer from 1 to 5"),
        ({"answer_id": AID, "score": True}, "score", "integer from 1 to 5"),
        ({"answer_id": AID, "thumbs": "up", "score": 1}, "score", "contradicts"),
        ({"answer_id": AID, "thumbs": "down", "score": 5}, "score", "contradicts"),
        ({"answer_id": AID, "thumbs": "up", "comment": "x" * (MAX_COMMENT_CHARS + 1)}, "comment", "longer than 2000"),
        ({"answer_id": AID, "thumbs": "up", "comment": ["a"]}, "comment", "must be a string"),
        ({"answer_id": AID, "thumb": "down"}, None, "unknown field(s): thumb"),
    ],
)
def test_normalize_refuses_bad_payloads(payload, param, message):
    with pytest.raises(InvalidFeedback, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        normalize_feedback(payload)
    assert isinstance(err.value, ValueError) and err.value.param == param


def test_negative_candidate_and_rollup():
    assert is_negative({"thumbs": "down", "score": 1}) and is_negative({"score": 2, "thumbs": "down"})
    assert not is_negative({"thumbs": "neutral", "score": 3}) and not is_negative({"thumbs": "up", "score": 5})
    a = answer(AID, TID)
    fb = {
        "answer_id": AID,
        "trace_id": TID,
        "score": 1,
        "thumbs": "down",
        "comment": "cites the wrong trial",
        "at": 5.0,
    }
    c = golden_candidate(fb, a)
    assert c["id"] == candidate_id(AID) == golden_candidate(fb, dict(a))["id"] and c["id"] != candidate_id("c" * 32)
    assert (c["question"], c["citations"], c["comment"], c["score"], c["status"]) == (
        "What is sepsis?",
        ["pmid-1#0"],
        "cites the wrong trial",
        1,
        "needs_review",
    )
    assert c["lineage"]["index_generation"] == "arctic_embed_s__abc" and c["lineage"]["prompt_version"] == "p3"

    dates = iter(["2025-03-01"] * 4 + ["2025-03-02"] * 2)  # generators: the rollup streams its inputs
    feedback = iter(
        [
            {"date": "2025-03-01", "score": 1, "thumbs": "down"},
            {"date": "2025-03-01", "score": 5, "thumbs": "up"},
            {"date": "2025-03-02", "score": 3, "thumbs": "neutral"},
        ]
    )
    assert daily_rollup(dates, feedback) == [
        {"date": "2025-03-01", "answers": 4, "feedback": 2, "negative": 1, "feedback_rate": 0.5, "negative_rate": 0.5},
        {"date": "2025-03-02", "answers": 2, "feedback": 1, "negative": 0, "feedback_rate": 0.5, "negative_rate": 0.0},
    ]
    assert daily_rollup([], []) == []
    assert daily_rollup(["2025-03-03"], [])[0]["negative_rate"] is None


# ------------------------------------------------------------------ records in a real state store


def test_records_find_by_id_and_trace_and_are_idempotent(records, store):
    a = answer(AID, TID, api_key="sk-must-not-be-stored")
    stored = records.record_answer(a)
    assert stored["at"] == T0 and "api_key" not in stored
    keys = sorted(store.list_keys("answers/"))
    assert keys == ["answers/by_trace/" + TID + ".json", "answers/date-2025-03-10/" + AID + ".json"]
    assert "sk-must-not-be-stored" not in store.get_bytes(keys[1]).decode()
    assert records.find_answer(answer_id=AID)["question"] == "What is sepsis?"
    assert records.find_answer(trace_id=TID)["answer_id"] == AID
    assert records.find_answer(answer_id="c" * 32) is None and records.find_answer(trace_id="c" * 32) is None
    assert records.find_answer(answer_id="../x") is None and records.find_answer() is None

    # the same answer again (as read back): the same key, nothing new
    records.record_answer(records.find_answer(answer_id=AID))
    assert sorted(store.list_keys("answers/")) == keys

    # by id: today and the 30 days before, by direct key
    old, older = answer(), answer()
    records.clock.now = T0 - 10 * DAY
    records.record_answer(old)
    records.clock.now = T0 - 40 * DAY
    records.record_answer(older)
    records.clock.now = T0
    assert records.find_answer(answer_id=old["answer_id"])["answer_id"] == old["answer_id"]
    assert records.find_answer(answer_id=older["answer_id"]) is None  # past the lookback
    assert records.find_answer(trace_id=older["trace_id"])["answer_id"] == older["answer_id"]  # the index has its date
    assert sorted(records.iter_answer_dates()) == ["2025-01-29", "2025-02-28", "2025-03-10"]
    assert sorted(records.iter_answer_dates(since_date="2025-02-28")) == ["2025-02-28", "2025-03-10"]
    with pytest.raises(ValueError, match="answer_id"):
        records.record_answer({"answer_id": "not-hex", "question": "q"})


def test_feedback_needs_a_known_answer_and_one_per_answer(records, store):
    records.record_answer(answer(AID, TID))
    with pytest.raises(LookupError, match="answer_id"):
        records.record_feedback({"answer_id": "c" * 32, "thumbs": "down"})
    with pytest.raises(LookupError, match="trace_id"):
        records.record_feedback({"trace_id": "c" * 32, "thumbs": "down"})
    with pytest.raises(InvalidFeedback, match="score"):
        records.record_feedback({"answer_id": AID, "score": 9})
    with pytest.raises(InvalidFeedback, match="does not belong"):
        records.record_feedback({"answer_id": AID, "trace_id": "c" * 32, "thumbs": "down"})
    assert list(store.list_keys("feedback/")) == []

    first = records.record_feedback({"trace_id": TID, "thumbs": "down", "comment": " wrong dose "})
    assert {k: first[k] for k in ("answer_id", "trace_id", "score", "thumbs", "comment", "date")} == {
        "answer_id": AID,
        "trace_id": TID,
        "score": 1,
        "thumbs": "down",
        "comment": "wrong dose",
        "date": "2025-03-10",
    }
    # a retry, then a change of mind the next day: the same object (the answer's day, an id per answer), latest wins
    assert records.record_feedback({"trace_id": TID, "thumbs": "down", "comment": "wrong dose"}) == first
    records.clock.now = T0 + DAY
    second = records.record_feedback({"answer_id": AID, "score": 4})
    assert second["feedback_id"] == first["feedback_id"]
    assert list(store.list_keys("feedback/")) == [f"feedback/date-2025-03-10/{first['feedback_id']}.json"]
    assert [(f["score"], f["thumbs"]) for f in records.iter_feedback()] == [(4, "up")]
    assert list(records.iter_feedback(since_date="2025-03-11")) == []
    assert len(list(records.iter_feedback(since_date="2025-03-10"))) == 1


# ------------------------------------------------------------------ the API routes


KEY = "test-api-key-0123456789"


@pytest.fixture
def client(records):
    from core.access import ALL, Principal

    def require_key(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), KEY.encode()):
            raise HTTPException(status_code=401, detail="missing or invalid bearer token")
        return Principal("admin", (ALL,))

    app = FastAPI()
    register_feedback_routes(app, records, require_key)
    records.record_answer(answer(AID, TID))
    with TestClient(app) as c:
        yield c


AUTH = {"Authorization": f"Bearer {KEY}"}


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == status and err["message"]
    return err


def test_feedback_route(client, records, store):
    assert client.post("/v1/feedback", json={"answer_id": AID, "thumbs": "up"}).status_code == 401
    bad_key = {"Authorization": "Bearer nope"}
    assert client.post("/v1/feedback", json={"answer_id": AID, "thumbs": "up"}, headers=bad_key).status_code == 401
    assert list(store.list_keys("feedback/")) == []

    r = client.post("/v1/feedback", json={"answer_id": AID, "thumbs": "down", "comment": "outdated"}, headers=AUTH)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["answer_id"] == AID and body["recorded"] is True and len(body["feedback_id"]) == 32
    assert [(f["thumbs"], f["comment"]) for f in records.iter_feedback()] == [("down", "outdated")]
    r = client.post("/v1/feedback", json={"trace_id": TID, "score": 5}, headers=AUTH)
    assert r.status_code == 201 and r.json()["feedback_id"] == body["feedback_id"]

    assert (
        "answer_id"
        in _error(client.post("/v1/feedback", json={"answer_id": "c" * 32, "score": 1}, headers=AUTH), 404)["message"]
    )
    _error(client.post("/v1/feedback", json={"trace_id": "c" * 32, "score": 1}, headers=AUTH), 404)
    assert (
        _error(client.post("/v1/feedback", json={"answer_id": AID, "score": 7}, headers=AUTH), 422)["param"] == "score"
    )
    assert (
        _error(client.post("/v1/feedback", json={"answer_id": AID, "thumbs": "meh"}, headers=AUTH), 422)["param"]
        == "thumbs"
    )
    assert _error(client.post("/v1/feedback", json={"score": 1}, headers=AUTH), 422)["param"] == "answer_id"
    assert _error(client.post("/v1/feedback", json={"answer_id": AID}, headers=AUTH), 422)["param"] == "thumbs"
    long = {"answer_id": AID, "thumbs": "down", "comment": "x" * (MAX_COMMENT_CHARS + 1)}
    assert _error(client.post("/v1/feedback", json=long, headers=AUTH), 422)["param"] == "comment"
    _error(client.post("/v1/feedback", content=b"{not json", headers={**AUTH, "content-type": "application/json"}), 400)
    _error(client.post("/v1/feedback", json=[AID, "up"], headers=AUTH), 400)
    huge = json.dumps({"answer_id": AID, "thumbs": "up", "comment": "x" * MAX_BODY_BYTES}).encode()
    _error(client.post("/v1/feedback", content=huge, headers={**AUTH, "content-type": "application/json"}), 413)
    assert [f["score"] for f in records.iter_feedback()] == [5]  # nothing invalid was stored

    assert client.get(f"/v1/answers/{AID}").status_code == 401
    r = client.get(f"/v1/answers/{AID}", headers=AUTH)
    assert r.status_code == 200 and r.json()["trace_id"] == TID and r.json()["lineage"]["llm"] == "qwen-1.5b"
    _error(client.get(f"/v1/answers/{'c' * 32}", headers=AUTH), 404)
    _error(client.get("/v1/answers/not-an-id", headers=AUTH), 404)
    assert "/v1/feedback" in client.get("/openapi.json").json()["paths"]


# ------------------------------------------------------------------ the asset


def _materialize(store) -> dict:
    result = dg.materialize(
        [feedback_candidates], resources={"pipeline_state": store}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def test_feedback_candidates_asset(store):
    empty = _materialize(store)  # nothing recorded yet: empty tables, no rate
    assert (empty["answers"], empty["feedback"], empty["candidates"], empty["feedback_rate"]) == (0, 0, 0, None)
    assert latest_feedback_rate(store) is None

    records = AnswerRecords(store, clock=Clock(T0 - DAY))
    day1 = [answer(question=f"q1-{i}") for i in range(4)]
    for a in day1:
        records.record_answer(a)
    records.record_feedback({"answer_id": day1[0]["answer_id"], "thumbs": "down", "comment": "wrong drug"})
    records.record_feedback({"answer_id": day1[1]["answer_id"], "thumbs": "up"})
    records.clock.now = T0
    day2 = [answer(question=f"q2-{i}") for i in range(2)]
    for a in day2:
        records.record_answer(a)
    records.record_feedback({"trace_id": day2[0]["trace_id"], "score": 2})
    records.record_feedback({"answer_id": day2[1]["answer_id"], "score": 3})

    meta = _materialize(store)
    assert (meta["answers"], meta["feedback"], meta["negative"], meta["new_candidates"]) == (6, 4, 2, 2)
    assert meta["feedback_rate"] == pytest.approx(4 / 6) and meta["negative_rate"] == pytest.approx(0.5)
    assert "wrong drug" in meta["candidates_preview"] and meta["feedback_rate_plot"].startswith(
        "![feedback rate](data:image/png;base64,"
    )
    assert store.get_bytes(FEEDBACK_RATE_PNG).startswith(b"\x89PNG")
    assert read_feedback_daily(store) == [
        {"date": "2025-03-09", "answers": 4, "feedback": 2, "negative": 1, "feedback_rate": 0.5, "negative_rate": 0.5},
        {"date": "2025-03-10", "answers": 2, "feedback": 2, "negative": 1, "feedback_rate": 1.0, "negative_rate": 0.5},
    ]
    assert latest_feedback_rate(store)["date"] == "2025-03-10"
    candidates = {c["question"]: c for c in read_feedback_candidates(store)}
    assert set(candidates) == {"q1-0", "q2-0"}  # negative feedback only
    c = candidates["q1-0"]
    assert c["id"] == candidate_id(day1[0]["answer_id"]) and c["status"] == "needs_review"
    assert (c["score"], c["thumbs"], c["comment"], c["citations"]) == (1, "down", "wrong drug", ["pmid-1#0"])
    assert json.loads(c["lineage"])["index_generation"] == "arctic_embed_s__abc"

    # a reviewer accepts one; the other user changes their mind; a new negative arrives: the verdict stays
    set_feedback_candidate_status(store, c["id"], "accepted")
    with pytest.raises(ValueError, match="status"):
        set_feedback_candidate_status(store, c["id"], "maybe")
    records.record_feedback({"answer_id": day1[0]["answer_id"], "thumbs": "up"})  # after review: the item stays
    records.record_feedback({"answer_id": day2[0]["answer_id"], "score": 4})  # before review: the item goes
    records.record_feedback({"answer_id": day1[2]["answer_id"], "score": 1})

    meta = _materialize(store)
    assert (meta["negative"], meta["new_candidates"], meta["candidates"], meta["needs_review"]) == (1, 1, 2, 1)
    after = {c["question"]: c for c in read_feedback_candidates(store)}
    assert set(after) == {"q1-0", "q1-2"}
    assert after["q1-0"]["status"] == "accepted" and after["q1-0"]["comment"] == "wrong drug"
    assert after["q1-2"]["status"] == "needs_review"
    # the same inputs again: nothing new, nothing lost
    again = _materialize(store)
    assert (again["new_candidates"], again["candidates"]) == (0, 2)
    assert read_feedback_candidates(store) == sorted(after.values(), key=lambda r: r["id"])


def test_eval_history_shows_the_latest_feedback_rate(store):
    from assets.evaluation import eval_history
    from assets.evaluation.state import LAST_RUN_RECORD

    run = {
        "run_id": "r1",
        "golden_version": "golden-v1",
        "generation": "g1",
        "serving_generation": "g1",
        "is_candidate": False,
        "models": {},
        "config": {},
        "summary": {"hybrid_id_context_recall": 1.0},
        "baseline_retrieval": None,
    }
    store.write_json(LAST_RUN_RECORD, run)

    def history_meta() -> dict:
        result = dg.materialize([eval_history], resources={"pipeline_state": store})
        (event,) = result.get_asset_materialization_events()
        return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}

    meta = history_meta()  # no feedback rollup yet: empty-safe
    assert meta["feedback_rate"] is None and meta["feedback_date"] == ""
    records = AnswerRecords(store, clock=Clock(T0))
    for i in range(4):
        records.record_answer(answer(AID if i == 0 else None, question=f"q{i}"))
    records.record_feedback({"answer_id": AID, "thumbs": "down"})
    _materialize(store)
    meta = history_meta()
    assert (meta["feedback_rate"], meta["feedback_negative_rate"], meta["feedback_date"]) == (0.25, 1.0, "2025-03-10")
