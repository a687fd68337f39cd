"""`manage.py serve` as users run it: one real Daphne process with the worker inside, over real sockets."""

from __future__ import annotations

import json
import os

import pytest

from devtools.api import call
from devtools.process import run_manage
from devtools.servers import free_port
from devtools.waiting import wait_for


@pytest.fixture
def served(serve_server):
    token = serve_server.manage("create_api_token", "carol").strip()
    serve_server.start()
    return serve_server.base_url, token


def poll(predicate, timeout: float = 10.0):
    return wait_for(predicate, timeout, interval_s=0.02)


def test_a_run_started_and_stopped_over_http_on_the_one_process_server(served):
    base, token = served
    status, session = call(base, token, "POST", "/api/sessions", {"title": "over the wire"})
    assert status == 201
    sid = session["id"]
    long_answer = 'script:{"turns": [{"words": 5000, "delay_ms": 5}]}'
    status, started = call(base, token, "POST", f"/api/sessions/{sid}/runs", {"text": long_answer})
    assert status == 201 and started["state"] == "provisioning"
    assert call(base, token, "POST", f"/api/sessions/{sid}/runs", {"text": "again"})[0] == 409

    def streaming_text():
        messages = call(base, token, "GET", f"/api/sessions/{sid}")[1]["messages"]
        return len(messages) > 1 and messages[-1]["text"]

    poll(streaming_text)
    status, stopped = call(base, token, "POST", f"/api/sessions/{sid}/stop", {"run_id": started["run_id"]})
    assert status == 200 and stopped["accepted"] is True and stopped["reason"] is None
    run = poll(lambda: (r := call(base, token, "GET", f"/api/runs/{started['run_id']}")[1])["state"] == "stopped" and r,
               timeout=5)
    assert run["outcome"] == "stopped" and run["stop"]["latency_ms"] is not None
    final = call(base, token, "GET", f"/api/sessions/{sid}")[1]["messages"][-1]
    assert final["status"] == "stopped" and 0 < len(final["text"].split()) < 5000
    again = call(base, token, "POST", f"/api/sessions/{sid}/stop", {})[1]
    assert (again["accepted"], again["reason"]) == (False, "already_stopped")

    # The same session goes on with a fresh run (the demo agent and its calculator tool).
    status, second = call(base, token, "POST", f"/api/sessions/{sid}/runs", {"text": "what is 6 * 7?"})
    assert status == 201
    done = poll(lambda: (r := call(base, token, "GET", f"/api/runs/{second['run_id']}")[1])["state"] == "completed" and r)
    assert done["function_calls"][0]["result"] == "42"


def test_serve_rejects_a_bad_address_and_an_unknown_model_clearly(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    bad_address = run_manage(env, "serve", "nowhere", timeout=120)
    assert bad_address.returncode != 0 and "is not ADDR:PORT" in bad_address.stderr
    bad_model = run_manage({**env, "HARNESS_MODEL": "gpt-nine"}, "serve", f"127.0.0.1:{free_port()}", timeout=120)
    assert bad_model.returncode != 0 and "'gpt-nine' is not a known model kind" in bad_model.stderr


def test_big_frames_are_answered_up_to_the_hard_limit_and_closed_cleanly_past_it(served):
    """Daphne (Autobahn) drops the connection on a message past its maximum size (1 MiB by default); ours is
    4 MiB, so every frame up to that is read and answered `frame_too_large` (the socket stays open), and only
    a frame past the documented hard limit ends the connection."""
    import json

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    base, token = served
    sid = call(base, token, "POST", "/api/sessions", {"title": "big frames"})[1]["id"]
    url = base.replace("http://", "ws://") + f"/ws/api/sessions/{sid}/"
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "session.snapshot"
        for size in (1024 * 1024 + 10, 4 * 1024 * 1024 - 100):  # past Daphne's default, under our limit
            socket.send(json.dumps({"type": "ping", "request_id": size, "pad": "x" * size}))
            answer = json.loads(socket.recv(timeout=10))
            assert (answer["code"], answer["request_id"], answer["http_status"]) == ("frame_too_large", None, 413)
        socket.send(json.dumps({"type": "ping", "request_id": "still open"}))
        assert json.loads(socket.recv(timeout=10)) == {"type": "ping.result", "request_id": "still open"}
        with pytest.raises(ConnectionClosed) as closed:
            socket.send("x" * (4 * 1024 * 1024 + 1))
            socket.recv(timeout=10)


def test_a_body_declared_multipart_that_is_not_gets_the_json_error(served):
    """Twisted would answer an unparsable multipart body itself (a bare 400, the connection closed); Daphne
    never uses that parsing, so it is off and our JSON parser answers."""
    import urllib.error
    import urllib.request

    base, token = served
    request = urllib.request.Request(f"{base}/api/sessions", method="POST", data=b"--not really multipart",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "multipart/form-data; boundary=xyz"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert refused.value.headers["Content-Type"] == "application/json"
    assert json.loads(refused.value.read())["error"] == "invalid_json"


def test_uploads_through_daphne_a_file_a_broken_body_and_one_over_the_limit(serve_server):
    """Through the real server: a multipart upload lands and downloads; a broken multipart body and an
    oversized one get their JSON errors (never Twisted's bare 400 or a 500)."""
    import urllib.error
    import urllib.request

    serve_server.env["HARNESS_UPLOAD_LIMIT_BYTES"] = "100000"
    token = serve_server.manage("create_api_token", "carol").strip()
    serve_server.start()
    base = serve_server.base_url
    sid = call(base, token, "POST", "/api/sessions", {"title": "uploads"})[1]["id"]

    def post(body: bytes, content_type: str, query: str = ""):
        request = urllib.request.Request(f"{base}/api/sessions/{sid}/files{query}", method="POST", data=body,
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers["Content-Type"], json.loads(response.read())
        except urllib.error.HTTPError as refused:
            return refused.code, refused.headers["Content-Type"], json.loads(refused.read())

    content = b"col\n" + b"1\n" * 5000
    form = (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.csv\"\r\n"
            b"Content-Type: text/csv\r\n\r\n" + content + b"\r\n--b0undary--\r\n")
    status, _, answer = post(form, "multipart/form-data; boundary=b0undary")
    assert (status, answer["name"], answer["size"]) == (201, "data.csv", len(content))
    request = urllib.request.Request(f"{base}/api/sessions/{sid}/files/data.csv",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as download:
        assert download.read() == content and download.headers["Content-Disposition"].startswith("attachment")

    assert post(b"--not really multipart", "multipart/form-data; boundary=xyz")[:2] == (400, "application/json")
    status, content_type, answer = post(b"x" * 100_001, "application/octet-stream", "?name=big.bin")
    assert (status, content_type, answer["error"]) == (413, "application/json", "body_too_large")
    status, _, answer = post(form.replace(content, b"x" * 100_001), "multipart/form-data; boundary=b0undary")
    assert (status, answer["error"]) == (413, "body_too_large")
    listed = call(base, token, "GET", f"/api/sessions/{sid}/files")[1]["files"]
    assert [f["path"] for f in listed] == ["data.csv"]
