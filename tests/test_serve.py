"""The HTTP service: a real uvicorn server on a loopback port, called over HTTP with urllib.

Every endpoint; predictions, recommendations and fold-ins equal to the library's; ids sent as
strings or numbers; bad requests (4xx with a one-line message, never 500); size limits; the
``autorec serve`` command in a subprocess; the message without FastAPI.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autorec[serve]'")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install 'autorec[serve]'")

from conftest import make_low_rank

from autorec import AutoRec
from autorec.serve import BackgroundServer, Limits, create_app

# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> AutoRec:
    """Integer ids: users 100..139, items 1000..1029."""
    return AutoRec(hidden=8, epochs=3, random_state=0, device="cpu").fit(make_low_rank())


@pytest.fixture(scope="module")
def server(model: AutoRec) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(model)) as running:
        yield running


@pytest.fixture(scope="module")
def text_model() -> AutoRec:
    """Text ids, some of them integer-looking: users 'u0'.., items '12', 'x9', ..."""
    ratings = make_low_rank(n_users=20, n_items=12, seed=1)
    frame = pd.DataFrame({
        "user_id": [f"u{u}" for u in ratings.user_idx],
        "item_id": ["x9" if i == 0 else str(10 + i) for i in ratings.item_idx],
        "rating": ratings.rating,
    })
    return AutoRec(hidden=4, epochs=2, random_state=0, device="cpu").fit(frame)


def call(url: str, path: str, body: Any = None, *, raw: bytes | None = None,
         method: str | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, Any]:
    """(status, parsed JSON body) of one request."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        payload = error.read()
        return error.code, json.loads(payload) if payload else None


def assert_client_error(status: int, payload: Any, expected: int | None = None) -> str:
    """A 4xx with a one-line message; returns the message."""
    assert 400 <= status < 500, (status, payload)
    if expected is not None:
        assert status == expected, (status, payload)
    detail = payload["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


# -- the endpoints ----------------------------------------------------------------------------
def test_health(server: BackgroundServer) -> None:
    status, payload = call(server.url, "/health")
    assert status == 200
    assert payload["status"] == "ok" and payload["uptime_seconds"] >= 0


def test_model_metadata(server: BackgroundServer, model: AutoRec) -> None:
    import autorec

    status, info = call(server.url, "/model")
    assert status == 200
    assert info["variant"] == "item"
    assert info["n_users"] == len(model.users_) == 40
    assert info["n_items"] == len(model.items_) == 30
    assert info["n_ratings"] == model.members_[0].matrix.nnz
    assert info["rating_scale"] == list(model.rating_scale_)
    assert info["params"]["hidden"] == 8
    assert info["networks"][0]["hidden"] == 8
    assert info["id_types"] == {"users": "integer", "items": "integer"}
    assert info["versions"]["serving"]["autorec"] == autorec.__version__
    assert info["limits"] == Limits().as_dict()


def test_openapi_and_docs(server: BackgroundServer) -> None:
    status, schema = call(server.url, "/openapi.json")
    assert status == 200
    assert {"/predict", "/recommend", "/fold-in", "/health", "/model"} <= set(schema["paths"])
    with urllib.request.urlopen(server.url + "/docs", timeout=60) as response:
        assert response.status == 200
        assert b"swagger" in response.read().lower()


def test_predict_equals_the_library(server: BackgroundServer, model: AutoRec) -> None:
    rng = np.random.default_rng(0)
    users = [int(u) for u in rng.choice(model.users_.raw_ids, 50)] + [999, 100]
    items = [int(i) for i in rng.choice(model.items_.raw_ids, 50)] + [1000, 5]
    status, payload = call(server.url, "/predict", {"pairs": [[u, i] for u, i in
                                                              zip(users, items, strict=True)]})
    assert status == 200
    expected, cold = model.predict(users, items, return_cold=True)
    got = payload["predictions"]
    assert [p["prediction"] for p in got] == expected.tolist()  # exactly, float64 through JSON
    assert [p["fallback"] for p in got] == cold.tolist()
    assert [(p["user"], p["item"]) for p in got] == list(zip(users, items, strict=True))
    assert got[-1]["fallback"] and got[-2]["fallback"] and not got[0]["fallback"]
    assert payload["n_fallback"] == int(cold.sum()) == 2


def test_string_and_number_ids_are_one_id(server: BackgroundServer, model: AutoRec) -> None:
    pairs = [[100, 1000], ["100", "1000"], [100, "1000"], ["0100", 1000], ["100 ", 1000]]
    status, payload = call(server.url, "/predict", {"pairs": pairs})
    assert status == 200
    got = payload["predictions"]
    assert got[0]["prediction"] == got[1]["prediction"] == got[2]["prediction"] == float(
        model.predict([100], [1000])[0])
    # "100 " is 100: spaces around an id are dropped, as the command line and the readers do
    assert [p["fallback"] for p in got] == [False, False, False, True, False]
    assert got[4]["prediction"] == got[0]["prediction"] and got[4]["user"] == "100"
    assert got[1]["user"] == "100" and got[1]["item"] == "1000"  # echoed as sent
    # an integer beyond int64, and its text: unknown ids, not errors
    status, payload = call(server.url, "/predict", {"pairs": [[10**30, 1000],
                                                              [str(10**30), 1000]]})
    assert status == 200
    assert [p["fallback"] for p in payload["predictions"]] == [True, True]
    assert payload["predictions"][0]["user"] == 10**30


def test_text_ids(text_model: AutoRec) -> None:
    with BackgroundServer(create_app(text_model)) as running:
        status, payload = call(running.url, "/predict",
                               {"pairs": [["u1", 12], ["u1", "12"], ["u1", "x9"], ["u1", 9]]})
        assert status == 200
        got = payload["predictions"]
        expected = text_model.predict(["u1", "u1", "u1", "u1"], ["12", "12", "x9", "9"])
        assert [p["prediction"] for p in got] == expected.tolist()
        assert [p["fallback"] for p in got] == [False, False, False, True]
        status, payload = call(running.url, "/recommend", {"user": "u1", "n": 3})
        assert status == 200
        assert all(isinstance(entry["item"], str) for entry in payload["items"])
        status, info = call(running.url, "/model")
        assert info["id_types"] == {"users": "text", "items": "text"}


def test_recommend_equals_the_library(server: BackgroundServer, model: AutoRec) -> None:
    for body, user in (({"user": 100, "n": 5}, 100),
                       ({"user": "101", "n": 7, "exclude_seen": False}, "101")):
        status, payload = call(server.url, "/recommend", body)
        assert status == 200
        expected = model.recommend([user], n=body["n"],
                                   exclude_seen=body.get("exclude_seen", True))
        assert payload["user"] == user and payload["fallback"] is False
        assert [e["rank"] for e in payload["items"]] == expected["rank"].tolist()
        assert [e["item"] for e in payload["items"]] == expected["item_id"].tolist()
        assert [e["score"] for e in payload["items"]] == expected["score"].tolist()


def test_recommend_defaults_and_unknown_user(server: BackgroundServer, model: AutoRec) -> None:
    status, payload = call(server.url, "/recommend", {"user": 100})
    assert status == 200 and len(payload["items"]) == 10
    status, payload = call(server.url, "/recommend", {"user": "stranger", "n": 4})
    assert status == 200 and payload["fallback"] is True
    expected = model.recommend(["stranger"], n=4)
    assert [e["item"] for e in payload["items"]] == expected["item_id"].tolist()
    assert [e["score"] for e in payload["items"]] == expected["score"].tolist()
    # more than there are items: as many as there are (30 items, some seen)
    status, payload = call(server.url, "/recommend", {"user": 100, "n": 1000})
    assert status == 200
    assert len(payload["items"]) == len(model.recommend([100], n=1000))


def test_fold_in_equals_the_library(server: BackgroundServer, model: AutoRec) -> None:
    ratings = {"1000": 5, "1003": 1.5, "1007": 4, "77777": 3}
    status, payload = call(server.url, "/fold-in", {"ratings": ratings, "n": 5})
    assert status == 200
    expected = model.fold_in_user(ratings, n=5)
    assert payload["fallback"] is False
    assert payload["n_ratings"] == expected.n_ratings == 3
    assert payload["n_unknown"] == expected.n_unknown == 1
    assert payload["bias"] == expected.bias
    recommendations = expected.recommendations
    assert [e["item"] for e in payload["recommendations"]] == recommendations["item_id"].tolist()
    assert [e["score"] for e in payload["recommendations"]] == recommendations["score"].tolist()
    assert not {"1000", "1003", "1007"} & {str(e["item"]) for e in payload["recommendations"]}
    # no items asked: every item the model knows, in its order
    assert [p["item"] for p in payload["predictions"]] == model.items_.raw_ids.tolist()
    assert [p["prediction"] for p in payload["predictions"]] == expected.scores.tolist()
    # the model is not changed
    assert len(model.users_) == 40


def test_fold_in_items_and_fallbacks(server: BackgroundServer, model: AutoRec) -> None:
    ratings = {"1000": 5, "1001": 2}
    status, payload = call(server.url, "/fold-in", {"ratings": ratings, "n": 3,
                                                    "exclude_rated": False,
                                                    "items": [1000, "1002", "nope"]})
    assert status == 200
    expected = model.fold_in_user(ratings, n=3, exclude_rated=False)
    got = payload["predictions"]
    assert [p["item"] for p in got] == [1000, "1002", "nope"]
    assert got[0]["prediction"] == expected.scores[1000]
    assert got[1]["prediction"] == expected.scores[1002]
    assert [p["fallback"] for p in got] == [False, False, True]
    low, high = model.rating_scale_
    assert got[2]["prediction"] == pytest.approx(
        float(np.clip(model.biases_.mean + expected.bias, low, high)))
    assert [e["item"] for e in payload["recommendations"]] == (
        expected.recommendations["item_id"].tolist())
    # no rating of a known item: the cold fallback, flagged
    status, payload = call(server.url, "/fold-in", {"ratings": {"nope": 4}, "n": 2})
    assert status == 200
    assert payload["fallback"] is True and payload["n_ratings"] == 0
    assert payload["n_unknown"] == 1
    # and so is each of its predictions (they said false: /predict flags the same values)
    assert payload["predictions"] and all(p["fallback"] for p in payload["predictions"])
    status, payload = call(server.url, "/fold-in", {"ratings": {"nope": 4}, "items": [1000]})
    assert [p["fallback"] for p in payload["predictions"]] == [True]
    assert call(server.url, "/predict", {"pairs": [["nobody", 1000]]})[1]["predictions"][0][
        "prediction"] == payload["predictions"][0]["prediction"]


def test_concurrent_requests(server: BackgroundServer, model: AutoRec) -> None:
    expected = model.predict([100, 101], [1000, 1001]).tolist()
    failures: list[Any] = []

    def worker(k: int) -> None:
        for _ in range(5):
            if k % 2:
                status, payload = call(server.url, "/predict",
                                       {"pairs": [[100, 1000], [101, 1001]]})
                if status != 200 or [p["prediction"] for p in payload["predictions"]] != expected:
                    failures.append((status, payload))
            else:
                status, payload = call(server.url, "/recommend", {"user": 100 + k, "n": 3})
                if status != 200 or len(payload["items"]) != 3:
                    failures.append((status, payload))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


# -- bad requests -----------------------------------------------------------------------------
BAD_REQUESTS = [
    ("/predict", b"{not json", "not valid JSON"),
    ("/predict", b"", "JSON body is required"),
    ("/predict", b"[1, 2]", "JSON object"),
    ("/predict", b'"pairs"', "JSON object"),
    ("/predict", b'{"pairs": []}', "at least one pair"),
    ("/predict", b'{"pairs": [[1]]}', "pair is [user, item]"),
    ("/predict", b'{"pairs": [[1, 2, 3]]}', "pair is [user, item]"),
    ("/predict", b'{"pairs": [1, 2]}', "pair is [user, item]"),
    ("/predict", b'{"pairs": "1,2"}', "pairs"),
    ("/predict", b'{"pairs": null}', "pairs"),
    ("/predict", b'{"pairs": [[1.5, 2]]}', "string or integer"),
    ("/predict", b'{"pairs": [[true, 2]]}', "boolean"),
    ("/predict", b'{"pairs": [[null, 2]]}', "string or integer"),
    ("/predict", b'{"pairs": [[{"id": 1}, 2]]}', "string or integer"),
    ("/predict", b'{"pairs": [["", 2]]}', "empty"),
    ("/predict", b'{"pairs": [["' + b"x" * 300 + b'", 2]]}', "at most 256"),
    ("/predict", b'{"pairs": [[1, 2]], "extra": 1}', "extra: unknown field"),
    ("/predict", b'{"pair": [[1, 2]]}', "pair: unknown field"),
    ("/recommend", b'{}', "user: required field missing"),
    ("/recommend", b'{"user": 1, "n": 0}', "from 1 to 1000"),
    ("/recommend", b'{"user": 1, "n": -3}', "from 1 to 1000"),
    ("/recommend", b'{"user": 1, "n": 1001}', "from 1 to 1000"),
    ("/recommend", b'{"user": 1, "n": "5"}', "must be an integer"),
    ("/recommend", b'{"user": 1, "n": 5.0}', "must be an integer"),
    ("/recommend", b'{"user": 1, "n": NaN}', "must be an integer"),
    ("/recommend", b'{"user": 1, "n": true}', "must be an integer"),
    ("/recommend", b'{"user": 1, "exclude_seen": "yes"}', "exclude_seen"),
    ("/recommend", b'{"user": 1, "exclude_seen": 1}', "exclude_seen"),
    ("/recommend", b'{"user": [1]}', "string or integer"),
    ("/recommend", b'{"user": 1, "items": [2]}', "items: unknown field"),
    ("/fold-in", b'{"ratings": {}}', "at least one rating"),
    ("/fold-in", b'{"ratings": []}', "ratings"),
    ("/fold-in", b'{"ratings": {"1000": NaN}}', "finite"),
    ("/fold-in", b'{"ratings": {"1000": Infinity}}', "finite"),
    ("/fold-in", b'{"ratings": {"1000": -Infinity}}', "finite"),
    ("/fold-in", b'{"ratings": {"1000": 1e400}}', "finite"),
    ("/fold-in", b'{"ratings": {"1000": 1e39}}', "float32"),
    ("/fold-in", b'{"ratings": {"1000": "5"}}', "is a number"),
    ("/fold-in", b'{"ratings": {"1000": true}}', "is a number"),
    ("/fold-in", b'{"ratings": {"1000": null}}', "is a number"),
    ("/fold-in", b'{"ratings": {"1000": 4}, "n": 0}', "from 1 to"),
    ("/fold-in", b'{"ratings": {"": 4}}', "ratings key '': an id cannot be empty"),  # not
    # "ratings..[key]"
    ("/fold-in", b'{"ratings": {"' + b"9" * 300 + b'": 4}}', "at most 256"),
    ("/recommend", b'{"user": 1' + b"0" * 300 + b'}', "at most 256"),  # its text, as a string's
    ("/predict", b'{"pairs": [[-' + b"9" * 256 + b', 1]]}', "at most 256"),
    ("/fold-in", b'{"ratings": {"1000": 4}, "items": []}', "at least one item"),
    ("/fold-in", b'{"ratings": {"1000": 4}, "items": [2.5]}', "string or integer"),
    ("/fold-in", b'{"ratings": {"1000": 4}, "add": true}', "add: unknown field"),
]


@pytest.mark.parametrize(("path", "raw", "message"), BAD_REQUESTS,
                         ids=[f"{p}:{r[:30]!r}" for p, r, _ in BAD_REQUESTS])
def test_bad_request_gets_a_clear_4xx(server: BackgroundServer, path: str, raw: bytes,
                                      message: str) -> None:
    status, payload = call(server.url, path, raw=raw)
    detail = assert_client_error(status, payload, 422)
    assert message in detail
    assert payload["errors"] and all({"loc", "msg", "type"} <= set(e) for e in payload["errors"])


def test_other_bad_requests(server: BackgroundServer) -> None:
    # not JSON at all
    status, payload = call(server.url, "/predict", {"pairs": [[1, 2]]},
                           headers={"Content-Type": "text/plain"})
    assert "application/json" in assert_client_error(status, payload, 415)
    # nested too deep for the JSON parser
    status, payload = call(server.url, "/predict", raw=b"[" * 100_000 + b"]" * 100_000)
    assert_client_error(status, payload)
    # valid JSON that Python does not read (an integer of 4,300+ digits): was FastAPI's 400
    status, payload = call(server.url, "/recommend", raw=b'{"user": 1' + b"0" * 5_000 + b"}")
    assert "over 4,300 digits" in assert_client_error(status, payload, 422)
    # unknown path, wrong method
    status, payload = call(server.url, "/nothing")
    assert_client_error(status, payload, 404)
    status, payload = call(server.url, "/predict")
    assert_client_error(status, payload, 405)
    status, payload = call(server.url, "/health", raw=b"{}", method="POST")
    assert_client_error(status, payload, 405)
    # the server still answers
    assert call(server.url, "/health")[0] == 200


# -- edge cases of issue 12: text, content types, HEAD, duplicate keys, spaces, scale ---------
def raw_call(url: str, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of one request sent exactly as given (no default headers)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


SURROGATES = [
    ("/predict", b'{"pairs": [["\\ud800", 1000]]}'),
    ("/predict", b'{"pairs": [[100, "a\\udfff"]]}'),
    ("/recommend", b'{"user": "\\ud800"}'),
    ("/fold-in", b'{"ratings": {"\\ud800": 5}}'),
    ("/fold-in", b'{"ratings": {"1000": 5}, "items": ["\\ud800"]}'),
    ("/recommend", b'{"user": 100, "\\ud800": 1}'),
]


@pytest.mark.parametrize(("path", "raw"), SURROGATES, ids=[f"{p}:{r!r}" for p, r in SURROGATES])
def test_lone_surrogates_get_422_not_500(server: BackgroundServer, path: str,
                                         raw: bytes) -> None:
    status, payload = call(server.url, path, raw=raw)
    assert "surrogate" in assert_client_error(status, payload, 422)
    assert call(server.url, "/health")[0] == 200


@pytest.mark.parametrize("path", ["/predict", "/recommend", "/fold-in"])
def test_non_utf8_bodies_get_422(server: BackgroundServer, path: str) -> None:
    body = {"/predict": b'{"pairs": [["\xff", 1000]]}', "/recommend": b'{"user": "\xe9"}',
            "/fold-in": b'{"ratings": {"\xff\xfe": 5}}'}[path]
    status, payload = call(server.url, path, raw=body)
    assert "UTF-8" in assert_client_error(status, payload, 422)


@pytest.mark.parametrize("encode", [
    lambda text: b"\xef\xbb\xbf" + text.encode(), lambda text: text.encode("utf-16-le"),
    lambda text: text.encode("utf-16-be"), lambda text: text.encode("utf-32-le")],
    ids=["utf-8 with BOM", "utf-16-le", "utf-16-be", "utf-32-le"])
def test_bodies_json_reads_by_guessing_their_encoding_get_422(server: BackgroundServer,
                                                              encode) -> None:
    """A BOM or UTF-16/32 body failed the middleware's own parse and went on unchecked to
    FastAPI, which reads bytes in any of them: its key given twice was then taken silently
    (``{"user": 1, "user": 196}`` answered for user 196)."""
    for path, text in (("/recommend", '{"user": 1000, "user": 100}'),
                       ("/predict", '{"pairs": [[100, 1000]]}')):
        status, payload = call(server.url, path, raw=encode(text))
        assert "byte order mark" in assert_client_error(status, payload, 422)


def test_head_works_on_get_routes(server: BackgroundServer) -> None:
    for path in ("/health", "/model"):
        status, body, headers = raw_call(server.url, "HEAD", path)
        assert status == 200 and body == b""
        assert headers["content-type"] == "application/json"
    assert raw_call(server.url, "HEAD", "/predict")[0] == 405


@pytest.mark.parametrize("content_type", [None, "", "text/plain",
                                          "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1"])
def test_a_post_without_a_json_content_type_gets_415(server: BackgroundServer,
                                                     content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    for path, body in (("/recommend", b'{"user": 100}'), ("/predict", b'{"pairs": [[1, 2]]}'),
                       ("/fold-in", b'{"ratings": {"1000": 4}}')):
        status, raw, _ = raw_call(server.url, "POST", path, body, headers)
        assert status == 415, (path, status, raw)
        detail = json.loads(raw)["detail"]
        assert "application/json" in detail and "\n" not in detail
    for fine in ("application/json", "application/json; charset=utf-8", "Application/JSON",
                 "application/vnd.api+json"):
        status, raw, _ = raw_call(server.url, "POST", "/recommend", b'{"user": 100}',
                                  {"Content-Type": fine})
        assert status == 200, (fine, raw)


@pytest.mark.parametrize(("path", "raw", "key"), [
    ("/recommend", b'{"user": 100, "user": 101}', "user"),
    ("/recommend", b'{"user": 100, "n": 2, "n": 3}', "n"),
    ("/fold-in", b'{"ratings": {"1000": 5, "1000": 1}}', "1000"),
    ("/predict", b'{"pairs": [[100, 1000]], "pairs": [[101, 1001]]}', "pairs"),
])
def test_duplicate_json_keys_are_refused(server: BackgroundServer, path: str, raw: bytes,
                                         key: str) -> None:
    status, payload = call(server.url, path, raw=raw)
    detail = assert_client_error(status, payload, 422)
    assert f"'{key}'" in detail and "twice" in detail


def test_spaces_around_ids_are_dropped_as_on_the_command_line(server: BackgroundServer,
                                                              model: AutoRec) -> None:
    status, payload = call(server.url, "/recommend", {"user": " 100\t", "n": 3})
    assert status == 200 and payload["user"] == "100" and not payload["fallback"]
    assert [e["item"] for e in payload["items"]] == model.recommend([100], n=3)[
        "item_id"].tolist()
    status, payload = call(server.url, "/fold-in", {"ratings": {" 1000 ": 5, "1001": 2}})
    assert status == 200 and payload["n_ratings"] == 2 and payload["n_unknown"] == 0
    # two keys that are one id once stripped: refused, as a repeated id is
    status, payload = call(server.url, "/fold-in", {"ratings": {"1000": 5, " 1000": 1}})
    assert "more than once" in assert_client_error(status, payload, 422)
    status, payload = call(server.url, "/recommend", {"user": "  "})
    assert "empty" in assert_client_error(status, payload, 422)


@pytest.mark.parametrize("rating", [0, 6, -1e9, 5.01])
def test_out_of_scale_fold_in_ratings_get_422(server: BackgroundServer, model: AutoRec,
                                              rating: float) -> None:
    status, payload = call(server.url, "/fold-in", {"ratings": {"1000": 4, "1001": rating}})
    detail = assert_client_error(status, payload, 422)
    assert "outside the model's rating scale 1 to 5" in detail
    with pytest.raises(ValueError, match="outside the model's rating scale"):
        model.fold_in_user({1000: 4, 1001: rating})  # the same refusal as the Python API


def test_float_ids_are_refused_as_in_python(server: BackgroundServer, model: AutoRec) -> None:
    status, payload = call(server.url, "/predict", {"pairs": [[100.0, 1000]]})
    assert_client_error(status, payload, 422)
    with pytest.raises(ValueError, match="floating-point"):
        model.predict([100.0], [1000])


@pytest.mark.parametrize("ranking", ["auto", "none"])
def test_a_non_finite_prediction_is_an_error_not_null(ranking: str) -> None:
    broken = AutoRec(hidden=4, epochs=1, random_state=0, device="cpu",
                     ranking=ranking).fit(make_low_rank())
    broken.biases_.item[:] = np.nan  # a model whose weights are not finite
    with BackgroundServer(create_app(broken, warm=False)) as running:
        for path, body in (("/predict", {"pairs": [[100, 1000]]}),
                           ("/fold-in", {"ratings": {"1000": 4}}),
                           # a known user's list was empty with a 200 (NaN taken for excluded)
                           ("/recommend", {"user": 100}), ("/recommend", {"user": -5})):
            request = urllib.request.Request(running.url + path, data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=60)
            assert caught.value.code == 500
            raw = caught.value.read()
            assert b"null" not in raw and b"NaN" not in raw
            assert "not finite" in json.loads(raw)["detail"]


# -- size limits -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_server(model: AutoRec) -> Iterator[BackgroundServer]:
    limits = Limits(max_body_bytes=2_000, max_pairs=20, max_ratings=5, max_n=7,
                    max_id_length=10)
    with BackgroundServer(create_app(model, limits=limits)) as running:
        yield running


def test_body_over_the_limit_is_413(small_server: BackgroundServer,
                                    server: BackgroundServer) -> None:
    body = json.dumps({"pairs": [["x" * 8, "y" * 8]] * 10, "pad": " " * 2_000}).encode()
    assert len(body) > 2_000
    status, payload = call(small_server.url, "/predict", raw=body)
    detail = assert_client_error(status, payload, 413)
    assert "at most 2000 bytes" in detail
    # the default limit, 1 MiB, with a real Content-Length
    status, payload = call(server.url, "/predict", raw=b" " * ((1 << 20) + 1))
    assert_client_error(status, payload, 413)
    # the server goes on answering
    assert call(small_server.url, "/health")[0] == 200


def test_chunked_body_over_the_limit_is_413(small_server: BackgroundServer) -> None:
    host, port = small_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = [b'{"pairs": [', *([b'[1, 2], '] * 400), b'[1, 2]]}']
    connection.request("POST", "/predict", body=iter(chunks),
                       headers={"Content-Type": "application/json"}, encode_chunked=True)
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    assert response.status == 413
    assert "at most 2000 bytes" in payload["detail"]
    # a small chunked body passes
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/predict", body=iter([b'{"pairs": ', b'[[100, 1000]]}']),
                       headers={"Content-Type": "application/json"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 200
    assert len(json.loads(response.read())["predictions"]) == 1
    connection.close()


def test_lists_over_the_limits_are_413(small_server: BackgroundServer) -> None:
    status, payload = call(small_server.url, "/predict", {"pairs": [[1, 2]] * 21})
    assert "at most 20 pairs" in assert_client_error(status, payload, 413)
    assert call(small_server.url, "/predict", {"pairs": [[1, 2]] * 20})[0] == 200
    ratings = {str(1000 + k): 3 for k in range(6)}
    status, payload = call(small_server.url, "/fold-in", {"ratings": ratings})
    assert "at most 5 ratings" in assert_client_error(status, payload, 413)
    status, payload = call(small_server.url, "/fold-in",
                           {"ratings": {"1000": 4}, "items": [1] * 21})
    assert "at most 20 items" in assert_client_error(status, payload, 413)
    status, payload = call(small_server.url, "/recommend", {"user": 100, "n": 8})
    assert "from 1 to 7" in assert_client_error(status, payload, 422)
    status, payload = call(small_server.url, "/predict", {"pairs": [["x" * 11, 2]]})
    assert "at most 10 characters" in assert_client_error(status, payload, 422)
    status, info = call(small_server.url, "/model")
    assert info["limits"]["max_pairs"] == 20


def test_every_id_the_model_knows_can_be_asked_for_whatever_its_length() -> None:
    """A 300-character user id trained, predicted and recommended from the command line and
    the library, but over HTTP it got 422 (ids over 256 characters)."""
    frame = make_low_rank().to_dataframe()
    long_id = "U" * 300
    frame["user_id"] = frame["user_id"].map(lambda u: long_id if u == 100 else f"u{u}")
    model = AutoRec(hidden=4, epochs=1, random_state=0, device="cpu",
                    ranking="none").fit(frame)
    with BackgroundServer(create_app(model, limits=Limits(max_id_length=256))) as running:
        status, answer = call(running.url, "/recommend", {"user": long_id, "n": 2})
        assert status == 200 and not answer["fallback"], answer
        status, info = call(running.url, "/model")
        assert info["limits"]["max_id_length"] == 300
        status, payload = call(running.url, "/predict", {"pairs": [["V" * 301, 2]]})
        assert "at most 300 characters" in assert_client_error(status, payload, 422)


def test_each_app_has_its_own_limits(small_server: BackgroundServer,
                                     server: BackgroundServer) -> None:
    assert call(server.url, "/predict", {"pairs": [[1, 2]] * 21})[0] == 200
    assert call(small_server.url, "/predict", {"pairs": [[1, 2]] * 21})[0] == 413


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_pairs must be a positive integer"):
        Limits(max_pairs=0)


# -- the command ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(model: AutoRec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("served") / "model"
    model.save(folder)
    return folder


def _start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "autorec", "serve", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=60)
        raise AssertionError(f"autorec serve did not start: {process.stderr.read()}")
    url = line.split(" at ", 1)[1].split()[0]
    return process, url


def test_serve_command(model_dir: Path, model: AutoRec) -> None:
    process, url = _start(["--model", str(model_dir), "--port", "0"])
    try:
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 60
        while True:
            try:
                status, payload = call(url, "/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert status == 200
        status, payload = call(url, "/predict", {"pairs": [[100, 1000], ["101", "1001"]]})
        assert status == 200
        assert [p["prediction"] for p in payload["predictions"]] == model.predict(
            [100, 101], [1000, 1001]).tolist()
        status, payload = call(url, "/recommend", {"user": 100, "n": 3})
        assert [e["item"] for e in payload["items"]] == model.recommend(
            [100], n=3)["item_id"].tolist()
        status, info = call(url, "/model")
        assert info["versions"]["trained_with"]["autorec"]
        assert info["format_version"] == 3
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode in (0, 130)
    assert "Traceback" not in process.stderr.read()


def test_serve_refuses_a_bad_model_folder(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "autorec", "serve", "--model",
                             str(tmp_path / "missing"), "--port", "0"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such model folder" in lines[0]


def test_serve_refuses_a_port_in_use(model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "autorec", "serve", "--model",
                                 str(model_dir), "--port", str(port)],
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0]


def test_serve_bad_port_option(capsys: pytest.CaptureFixture[str], model_dir: Path) -> None:
    from autorec.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", str(model_dir), "--port", "70000"])
    assert exit_info.value.code == 2
    assert "port from 0 to 65535" in capsys.readouterr().err


def test_serve_without_fastapi_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str],
                                                   model_dir: Path) -> None:
    from autorec.cli.main import main

    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install 'autorec[serve]'" in err[0]


def test_a_client_stalled_mid_body_does_not_hold_up_the_shutdown(model, monkeypatch,
                                                                 caplog) -> None:
    """uvicorn waited without end for a request in progress: a client that sent half its
    body and stalled kept a SIGTERM'd server alive (its socket already closed) until the
    client went; requests in progress are cancelled after SHUTDOWN_GRACE now, answered 503
    (the cancelled request was logged as a 57-line traceback of the app)."""
    from autorec.serve import server as server_module

    monkeypatch.setattr(server_module, "SHUTDOWN_GRACE", 0.5, raising=False)
    running = BackgroundServer(create_app(model)).__enter__()
    host, port = running.url.removeprefix("http://").rsplit(":", 1)
    stalled = socket.create_connection((host, int(port)))
    try:
        stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        b"\r\nContent-Length: 100\r\n\r\n{\"pairs\"")
        time.sleep(0.3)  # the request is in the app, waiting for the rest of its body
        running.close()
        assert not running._thread.is_alive()
        stalled.settimeout(5)
        assert stalled.recv(4096).startswith(b"HTTP/1.1 503")
    finally:
        stalled.close()
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "Exception in ASGI application" not in logged
    assert "without starting response" not in logged


def test_a_request_without_n_stays_within_max_n(small_server: BackgroundServer,
                                                server: BackgroundServer) -> None:
    """A default is not validated: with --max-n 7, a request that left n out got 10 items,
    while the same n given was refused. Left out, n is now 10 within the server's max_n."""
    status, payload = call(small_server.url, "/recommend", {"user": 100})
    assert status == 200 and len(payload["items"]) == 7
    status, payload = call(small_server.url, "/fold-in", {"ratings": {"1000": 4.0}})
    assert status == 200 and len(payload["recommendations"]) == 7
    status, payload = call(server.url, "/recommend", {"user": 100})
    assert status == 200 and len(payload["items"]) == 10  # the default where max_n allows


def test_an_unexpected_failure_is_a_json_500(caplog) -> None:
    """With every network weight NaN, /fold-in failed inside torch's SVD and answered a
    plain-text 'Internal Server Error'; every answer is JSON with a one-line detail."""
    import torch

    broken = AutoRec(hidden=4, epochs=1, random_state=0, device="cpu").fit(make_low_rank())
    with torch.no_grad():
        for parameter in broken.fitted_.members[0].net.parameters():
            parameter.fill_(float("nan"))
    with BackgroundServer(create_app(broken, warm=False)) as running:
        status, payload = call(running.url, "/fold-in", {"ratings": {"1000": 4}})
        assert status == 500 and isinstance(payload, dict), payload
        assert "\n" not in payload["detail"] and payload["detail"]
        assert call(running.url, "/health")[0] == 200  # and it goes on serving


def test_a_mounted_app_answers_415_too(model: AutoRec) -> None:
    # the middleware checks the app's own paths; under a prefix the validation handler does
    from fastapi import FastAPI

    outer = FastAPI()
    outer.mount("/api", create_app(model))
    with BackgroundServer(outer) as running:
        status, raw, _ = raw_call(running.url, "POST", "/api/predict", b'{"pairs": [[1, 2]]}',
                                  {"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in json.loads(raw)["detail"]


def test_a_compressed_body_gets_415(server: BackgroundServer) -> None:
    """A gzip body was answered 422 "not valid JSON: not UTF-8 text (byte 1)"."""
    import gzip

    body = gzip.compress(b'{"pairs": [[1, 2]]}')
    status, raw, _ = raw_call(server.url, "POST", "/predict", body,
                              {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert status == 415 and "Content-Encoding 'gzip' is not supported" in json.loads(raw)["detail"]
    status, _, _ = raw_call(server.url, "POST", "/predict", b'{"pairs": [[1, 2]]}',
                            {"Content-Type": "application/json", "Content-Encoding": "identity"})
    assert status == 200
