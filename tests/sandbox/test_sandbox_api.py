"""The sandbox's own surface: the Python API, /_sandbox/*, the HTML page, start and stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime

import httpx
import pytest
from sendgrid import SendGridAPIClient
from twilio.rest import Client

from clarion.sandbox import Sandbox
from tests.conftest import REPO

MAIL = {
    "personalizations": [{"to": [{"email": "ada@example.org"}], "subject": "Hi"}],
    "from": {"email": "team@example.org"},
    "content": [{"type": "text/plain", "value": "hello"}],
}


def send_one_of_each(sendgrid_client: SendGridAPIClient, twilio: Client, x: httpx.Client) -> None:
    sendgrid_client.send(MAIL)
    twilio.messages.create(to="+14155552671", from_="+15005550006", body="hello")
    x.post("/2/tweets", json={"text": "hello"})


def test_messages_over_http_match_the_python_api(
    sb: Sandbox, sendgrid_client: SendGridAPIClient, twilio: Client, x: httpx.Client, http: httpx.Client
) -> None:
    send_one_of_each(sendgrid_client, twilio, x)

    everything = http.get("/_sandbox/messages").json()
    assert everything == sb.messages()
    assert [m["provider"] for m in everything] == ["sendgrid", "twilio", "x"]
    for m in everything:
        assert {
            "id",
            "provider",
            "to",
            "subject",
            "text",
            "html",
            "custom_args",
            "tags",
            "status_callback",
        } <= set(m)
        assert datetime.fromisoformat(m["received_at"]).utcoffset() is not None
        assert m["provider_id"]
    assert http.get("/_sandbox/messages", params={"provider": "twilio"}).json() == sb.messages("twilio")
    assert [r["provider"] for r in http.get("/_sandbox/requests").json()] == ["sendgrid", "twilio", "x"]
    assert http.get("/_sandbox/messages", params={"provider": "fax"}).status_code == 400
    counts = http.get("/_sandbox/counts").json()
    assert {p: n for p, n in counts.items() if n} == {"sendgrid": 1, "twilio": 1, "x": 1}
    assert set(counts) == set(sb.state.store.providers)  # every provider's emulator, the networks' too


def test_messages_can_be_paged(sb: Sandbox, x: httpx.Client, http: httpx.Client) -> None:
    for i in range(5):
        x.post("/2/tweets", json={"text": f"post {i}"})
    ids = [m["id"] for m in sb.messages()]
    page = http.get("/_sandbox/messages", params={"since_id": ids[1], "limit": 2}).json()
    assert [m["id"] for m in page] == ids[2:4]
    assert http.get("/_sandbox/messages", params={"limit": "many"}).status_code == 400
    with pytest.raises(ValueError, match="unknown provider"):
        sb.messages("fax")


def test_delete_resets_everything(
    sb: Sandbox, sendgrid_client: SendGridAPIClient, twilio: Client, x: httpx.Client, http: httpx.Client
) -> None:
    send_one_of_each(sendgrid_client, twilio, x)
    assert http.delete("/_sandbox/requests").status_code == 204
    assert sb.requests() == [] and len(sb.messages()) == 3

    assert http.delete("/_sandbox/messages").status_code == 204
    assert sb.messages() == [] and sb.requests() == []
    assert x.post("/2/tweets", json={"text": "hello"}).status_code == 201  # no longer a duplicate


def test_stored_records_are_read_only(sb: Sandbox, x: httpx.Client) -> None:
    x.post("/2/tweets", json={"text": "hello"})
    [record] = sb.messages()
    with pytest.raises(TypeError, match="read-only"):
        record["text"] = "changed"
    copy = dict(record)
    copy["text"] = "changed"
    assert sb.messages()[0]["text"] == "hello"


def test_the_page_shows_counts_and_escapes_everything(
    sb: Sandbox, sendgrid_client: SendGridAPIClient, x: httpx.Client, http: httpx.Client
) -> None:
    mail = {
        **MAIL,
        "personalizations": [{"to": [{"email": "ada@example.org"}], "subject": "<script>alert(1)</script>"}],
    }
    sendgrid_client.send(mail)
    x.post("/2/tweets", json={"text": "<img src=x onerror=alert(2)> & more"})

    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt; &amp; more" in page
    assert "Email (SendGrid): <strong>1</strong>" in page
    assert "Posts (X): <strong>1</strong>" in page


def test_unknown_provider_paths_answer_in_the_providers_format(sb: Sandbox, http: httpx.Client) -> None:
    response = http.get("/2/users/by/username/clarion", headers={"Authorization": "Bearer t"})
    assert response.status_code == 404
    assert response.json()["title"] == "Not Found Error"
    assert "x-rate-limit-remaining" in response.headers
    assert http.get("/v3/mail/send").status_code == 405
    assert [(r["provider"], r["status"]) for r in sb.requests()] == [("x", 404), ("sendgrid", 405)]


def test_sandbox_lifecycle_leaves_no_thread_and_frees_the_port() -> None:
    box = Sandbox(port=0)
    with pytest.raises(RuntimeError, match="not running"):
        _ = box.url
    with box:
        port = box.port
        assert box.url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{box.url}/_sandbox/health").json()["status"] == "ok"
    assert f"clarion-sandbox-{port}" not in {t.name for t in threading.enumerate()}
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # free again


def test_a_fixed_port_in_use_is_an_error(sandbox_server: Sandbox) -> None:
    with pytest.raises(OSError):
        Sandbox(port=sandbox_server.port).start()


def test_stopping_does_not_wait_for_stalled_requests() -> None:
    with Sandbox(port=0, faults={"x": {"timeout_rate": 1.0, "stall_seconds": 30}}) as box:
        client = httpx.Client(base_url=box.url, headers={"Authorization": "Bearer t"}, timeout=0.2)
        with client, pytest.raises(httpx.ReadTimeout):
            client.post("/2/tweets", json={"text": "stuck"})
        started = time.monotonic()
    assert time.monotonic() - started < 3


def test_serve_runs_in_the_foreground_until_interrupted() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        f"from clarion.sandbox import serve; serve(port={port}, faults={{'twilio': {{'failure_rate': 0.5}}}})"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                faults = httpx.get(f"http://127.0.0.1:{port}/_sandbox/faults").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.1)
        assert faults["twilio"]["failure_rate"] == 0.5
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) in (0, -signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
