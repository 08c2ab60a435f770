"""No secret reaches an output: campaigns run as a user runs them, with recognisable fake credentials, and
every output searched for them.

The credentials are canaries: each provider key and token, the link-signing key, the conversion webhook's
secret and a database password, each a distinctive value that cannot occur by chance. The runs go to the
provider sandbox (which accepts them, or refuses them as a revoked key or a suspended account would)
through `clarion run` in a subprocess, reporting to a Prefect server. Then everything Clarion wrote or said
is collected: the commands' stdout and stderr; the Prefect flow runs, their states, task runs, logs and
artifacts as the API serves them, and the Prefect server's database file; every row of every ledger table;
every file under the folders the commands used (the SQLite ledger's raw bytes with its WAL, the Prefect
home, the HTML report); and the tracking service's answers and log lines when genuine and forged webhooks
arrive. No canary may appear in any of them: not whole, not its first or last 12 characters (a truncated
or masked value), not as the base64 of Twilio's Basic credential.

Each test has canaries of its own (the Prefect server, and its database, are shared by the session).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, create_engine, select
from twilio.request_validator import RequestValidator

from clarion.base.serving import BackgroundServer
from clarion.base.signing import sign as conversion_signature
from clarion.sandbox.routes import SandboxState
from clarion.tracking import build_app
from tests.flows.conftest import CAMPAIGN, write_campaign
from tests.tracking.conftest import AppClient

pytestmark = pytest.mark.slow

TWILIO_SID = "AC" + "5e1f" * 8  # an identifier, not a secret: it is in every Twilio URL
CONTACTS = 50
X_OAUTH1 = ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN_SECRET")
SECRET_PREFIXES = ("SENDGRID_", "TWILIO_", "X_", "CLARION_", "BLUESKY_", "MASTODON_", "LINKEDIN_", "THREADS_")

APPROVAL = "approval:\n  required: true\n  approvers: [ana]\n  timeout: 30s\n"
INVALID = CAMPAIGN.replace('from: "+15005550006"', 'from: "+1555"').replace(
    "cta:", 'surprise: "{{ env }}"\ncta:'
)


# -- the canaries, and what is searched for -------------------------------------------------------------


#: Each canary opens with its kind, kept short so that its first 12 characters hold the test's tag.
KINDS = {
    "SENDGRID_API_KEY": "SG.sg",
    "TWILIO_AUTH_TOKEN": "twilio",
    "X_ACCESS_TOKEN": "xtok",
    "X_API_KEY": "xkey",
    "X_API_SECRET": "xsec",
    "X_ACCESS_TOKEN_SECRET": "xtoksec",
    "CLARION_SECRET_KEY": "signing",
    "CLARION_CONVERSION_SECRET": "conv",
    "BLUESKY_APP_PASSWORD": "bsky",
    "MASTODON_ACCESS_TOKEN": "masto",
    "LINKEDIN_ACCESS_TOKEN": "lnkd",
    "THREADS_ACCESS_TOKEN": "thrd",
    "database password": "dbpw",
}


@dataclass(frozen=True)
class Needle:
    secret: str  # which secret (its variable)
    form: str  # whole, first 12, last 12, base64 of a Basic credential
    value: str


class Canaries:
    """Fake credentials for one test, every one tagged with the test's own mark."""

    def __init__(self, test_name: str) -> None:
        self.tag = hashlib.sha256(test_name.encode()).hexdigest()[:4]
        self.values = {
            name: f"{kind}{self.tag}-leakcanary-{hashlib.sha256(f'{test_name}:{name}'.encode()).hexdigest()[:24]}"
            for name, kind in KINDS.items()
        }
        self.env = {k: v for k, v in self.values.items() if k != "database password"}
        basic = base64.b64encode(f"{TWILIO_SID}:{self.values['TWILIO_AUTH_TOKEN']}".encode()).decode()
        self.twilio_basic = basic
        self.needles: list[Needle] = []
        for name, value in self.values.items():
            for form, part in (
                ("whole", value),
                ("first 12 characters", value[:12]),
                ("last 12", value[-12:]),
            ):
                self.needles.append(Needle(name, form, part))
                others = [v for k, v in self.values.items() if k != name]
                assert not any(part.casefold() in v.casefold() for v in others), "needles name one secret"
        self.needles.append(Needle("TWILIO_AUTH_TOKEN", "base64 of the Basic credential", basic))
        self.needles.append(
            Needle("some canary", f"the mark {self.tag}-leakcanary", f"{self.tag}-leakcanary")
        )


@dataclass
class Outputs:
    """Everything Clarion wrote or said, by where it came from."""

    texts: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def add(self, where: str, text: str) -> None:
        while where in self.texts:
            where += "'"
        self.texts[where] = text

    def leaks(self, needles: list[Needle]) -> list[str]:
        """One entry per output holding a canary: which secrets, in which forms, and the line where the
        first one is."""
        found = []
        for where, data in [*((w, t.encode()) for w, t in self.texts.items()), *self.blobs.items()]:
            lowered = data.lower()  # the canaries are ASCII
            hits: dict[str, list[str]] = {}
            first = len(data)
            for n in needles:
                if (at := lowered.find(n.value.lower().encode())) >= 0:
                    hits.setdefault(n.secret, []).append(n.form)
                    first = min(first, at)
            if hits:
                start = max(data.rfind(b"\n", 0, first) + 1, first - 200)
                end = data.find(b"\n", first)
                line = data[start : min(first + 200, end if end >= 0 else len(data))]
                secrets = "; ".join(f"{secret} ({', '.join(forms)})" for secret, forms in hits.items())
                found.append(f"{where}: {secrets}\n    at: {line.decode(errors='replace')}")
        return found


# -- the provider sandbox, seeing which credentials arrive ---------------------------------------------


class WitnessedSandbox:
    """The provider sandbox behind an ASGI layer that keeps each Authorization header it receives, so the
    test knows the canaries were the credentials used (the sandbox's own request log redacts them)."""

    def __init__(self) -> None:
        self.state = SandboxState()
        self.authorizations: list[str] = []
        self.server = BackgroundServer(
            self._app, lifespan="off", name="provider sandbox", loop="asyncio", http="h11", interface="asgi3"
        )

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    self.authorizations.append(value.decode("latin-1"))
        await self.state.app(scope, receive, send)

    def refuse_everything(self) -> None:
        """A revoked SendGrid key, a suspended Twilio account, revoked X, Bluesky, Mastodon, LinkedIn and
        Threads credentials."""
        self.state.control("sendgrid").update_account({"revoked": True})
        self.state.control("twilio").update_account({"status": "suspended"})
        for network in ("x", "bluesky", "mastodon", "linkedin", "threads"):
            self.state.control(network).update_account({"revoked": True})


@dataclass
class Desk:
    """A user's machine: a campaign folder, the environment with the canaries in it, the providers."""

    tmp: Path
    work: Path
    campaign: Path
    env: dict[str, str]
    canaries: Canaries
    box: WitnessedSandbox
    prefect_api: str
    outputs: Outputs = field(default_factory=Outputs)
    artifacts: set[str] = field(default_factory=set)  # the keys of the runs' Prefect artifacts
    tables: dict[str, int] = field(default_factory=dict)  # rows per ledger table

    @property
    def home(self) -> Path:
        return self.tmp / "home"

    def clarion(
        self, args: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`clarion ARGS` in a subprocess; its stdout and stderr are outputs."""
        proc = subprocess.run(
            [sys.executable, "-m", "clarion", *args],
            env=dict(self.env if env is None else env),
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        shown = " ".join(Path(a).name if a.startswith("/") else a for a in args)
        self.outputs.add(f"`clarion {shown}` stdout", proc.stdout)
        self.outputs.add(f"`clarion {shown}` stderr", proc.stderr)
        return proc

    def oauth2(self) -> dict[str, str]:
        """X by its OAuth 2.0 user token alone (X_ACCESS_TOKEN)."""
        return {k: v for k, v in self.env.items() if k not in X_OAUTH1}

    def leaks(self, run_ids: list[str]) -> list[str]:
        """Collect what Prefect, the file system and the ledger hold after these runs, then search every
        output. (The files first: the ledger's WAL is read as it is, before anything opens the database.)"""
        self.artifacts = collect_prefect(self.outputs, self.prefect_api, run_ids)
        for path in sorted(p for p in self.tmp.rglob("*") if p.is_file()):
            self.outputs.blobs[f"file {path.relative_to(self.tmp)}"] = path.read_bytes()
        for path in prefect_database():
            self.outputs.blobs[f"Prefect server database {path.name}"] = path.read_bytes()
        if (self.home / "clarion.db").exists():
            self.tables = collect_ledger(self.outputs, self.home / "clarion.db")
        return self.outputs.leaks(self.canaries.needles)


@pytest.fixture
def desk(
    tmp_path: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Desk]:
    canaries = Canaries(request.node.name)
    box = WitnessedSandbox()
    work = tmp_path / "campaign"
    work.mkdir()
    campaign = write_campaign(work, CONTACTS)
    with box.server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
        env.update(
            {
                **canaries.env,
                "TWILIO_ACCOUNT_SID": TWILIO_SID,
                "CLARION_HOME": str(tmp_path / "home"),
                "CLARION_SENDGRID_URL": box.server.url,
                "CLARION_TWILIO_URL": box.server.url,
                "CLARION_X_URL": box.server.url,
                "CLARION_BLUESKY_URL": box.server.url,
                "BLUESKY_HANDLE": "clarion-sandbox.bsky.social",
                "MASTODON_INSTANCE": box.server.url,
                "CLARION_LINKEDIN_URL": box.server.url,
                "LINKEDIN_ORGANIZATION": "2414183",
                "CLARION_THREADS_URL": box.server.url,
                "CLARION_HTTP_TIMEOUT": "5",
                "SENDGRID_WEBHOOK_PUBLIC_KEY": box.state.webhook_environment()["SENDGRID_WEBHOOK_PUBLIC_KEY"],
                "PREFECT_API_URL": prefect_server,
                "PREFECT_HOME": str(tmp_path / "prefect-home"),
                "PREFECT_LOGGING_LEVEL": "DEBUG",  # what Prefect itself says about the runs, all of it
            }
        )
        for key, value in env.items():  # the tracking service in this process reads the same environment
            if key.startswith(SECRET_PREFIXES):
                monkeypatch.setenv(key, value)
        yield Desk(tmp_path, work, campaign, env, canaries, box, prefect_server)
        box.state.stopping.set()


# -- what Prefect, the ledger and the file system hold -----------------------------------------------


def collect_prefect(outputs: Outputs, api: str, run_ids: list[str]) -> set[str]:
    """The flow runs named after `run_ids`: runs, states, task runs, logs and artifacts, as the Prefect API
    serves them to its UI. (Plain REST: this Prefect's sync client sends null for the filters it is not
    given, which its server refuses for artifacts.)"""
    with httpx.Client(base_url=api, timeout=60) as client:

        def post(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
            response = client.post(path, json=body)
            response.raise_for_status()
            outputs.add(f"Prefect API {path} {json.dumps(body)[:60]}", response.text)
            found: list[dict[str, Any]] = response.json()
            return found

        runs = post("/flow_runs/filter", {"flow_runs": {"name": {"any_": run_ids}}, "limit": 50})
        assert sorted(r["name"] for r in runs) == sorted(run_ids), "every run is a flow run named after it"
        ids = [r["id"] for r in runs]
        for run in runs:
            states = client.get("/flow_run_states/", params={"flow_run_id": run["id"]})
            outputs.add(f"Prefect states of {run['name']}", states.raise_for_status().text)
        post("/task_runs/filter", {"flow_runs": {"id": {"any_": ids}}, "limit": 200})
        logs: list[dict[str, Any]] = []
        while True:
            body = {"logs": {"flow_run_id": {"any_": ids}}, "sort": "TIMESTAMP_ASC", "limit": 200}
            page = post("/logs/filter", {**body, "offset": len(logs)})
            logs += page
            if len(page) < 200:
                break
        assert any(log["level"] < logging.INFO for log in logs), "the runs logged to Prefect, at DEBUG"
        artifacts = post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": ids}}, "limit": 200})
    return {str(a["key"]) for a in artifacts}


def prefect_database() -> list[Path]:
    """The Prefect server's SQLite database (and its WAL), where everything it was told is kept."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or "")
    if not url.startswith("sqlite"):
        return []
    path = Path(url.split("///", 1)[1])
    return [p for p in (path, Path(f"{path}-wal")) if p.exists()]


def collect_ledger(outputs: Outputs, db: Path) -> dict[str, int]:
    """Every row of every table, as SQLAlchemy reads them; returns the row count per table."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        meta = MetaData()
        meta.reflect(engine)
        counts = {}
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                rows = conn.execute(select(table)).all()
                counts[table.name] = len(rows)
                outputs.add(f"ledger table {table.name}", "\n".join(repr(tuple(r)) for r in rows))
        return counts
    finally:
        engine.dispose()


# -- the tracking service, with genuine and forged requests --------------------------------------------


def exercise_tracking(desk: Desk, caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    """The tracking service on this environment's keys, sent what providers, supporters and forgers send;
    every answer and log line is an output. Returns the answers' status codes by request."""
    box, outputs = desk.box, desk.outputs
    email = box.state.store.messages("sendgrid")[0]
    sms = box.state.store.messages("twilio")[0]
    email_token = email["custom_args"]["clarion_token"]
    callback = str(sms["status_callback"]).replace("https://go.example.org", "http://testserver")
    auth_token = desk.canaries.values["TWILIO_AUTH_TOKEN"]
    secret = desk.canaries.values["CLARION_CONVERSION_SECRET"].encode()
    statuses: dict[str, int] = {}

    caplog.set_level(logging.DEBUG)
    client = AppClient(build_app())  # its ledger, signing key and webhook keys from the environment
    try:

        def record(name: str, response: httpx.Response) -> None:
            statuses[name] = response.status_code
            outputs.add(
                f"tracking answer to {name}", f"{response.status_code} {response.headers} {response.text}"
            )

        def sendgrid(
            name: str, events: list[dict[str, Any]], *, signed: bool = True, forged: bool = False
        ) -> None:
            body = json.dumps(events).encode()
            stamp = str(int(time.time()))
            headers = {"Content-Type": "application/json"}
            if signed:
                signature = box.state.emulators["sendgrid"].signer.sign(
                    body + (b" " if forged else b""), stamp
                )
                headers["X-Twilio-Email-Event-Webhook-Signature"] = signature
                headers["X-Twilio-Email-Event-Webhook-Timestamp"] = stamp
            record(name, client.post("/webhooks/sendgrid", content=body, headers=headers))

        def twilio(name: str, params: dict[str, str], auth: str | None) -> None:
            headers = {}
            if auth is not None:
                headers["X-Twilio-Signature"] = RequestValidator(auth).compute_signature(callback, params)
            record(name, client.post(callback, data=params, headers=headers))

        def conversion(name: str, payload: dict[str, Any], key: bytes, at: float | None = None) -> None:
            body = json.dumps(payload).encode()
            stamp = str(int(time.time() if at is None else at))
            headers = {
                "Content-Type": "application/json",
                "X-Clarion-Timestamp": stamp,
                "X-Clarion-Signature": conversion_signature(key, stamp, body),
            }
            record(name, client.post("/webhooks/conversion", content=body, headers=headers))

        delivered = {"event": "delivered", "email": email["to"], "timestamp": int(time.time())}
        sendgrid("a SendGrid event", [{**delivered, "clarion_token": email_token, "sg_event_id": "ev-1"}])
        sendgrid("a forged SendGrid event", [{**delivered, "clarion_token": email_token}], forged=True)
        sendgrid("an unsigned SendGrid event", [delivered], signed=False)
        sms_params = {"MessageSid": str(sms["provider_id"]), "MessageStatus": "delivered", "To": sms["to"]}
        twilio("a Twilio callback", sms_params, auth_token)
        twilio("a Twilio callback signed with another token", sms_params, "not-the-auth-token-000000")
        twilio("an unsigned Twilio callback", sms_params, None)
        donation = {"id": "don-1", "token": email_token, "amount": "25.00", "currency": "USD"}
        conversion("a conversion", donation, secret)
        conversion("a conversion signed with another secret", {**donation, "id": "don-2"}, b"guessed-secret")
        conversion("a replayed conversion", {**donation, "id": "don-3"}, secret, at=time.time() - 86_400)
        conversion("a conversion with an unknown field", {**donation, "id": "don-4", "secret": "x"}, secret)
        record("a click", client.get(f"/c/{email_token}"))
        record("a forged click", client.get(f"/c/{email_token[:-4]}AAAA"))
        record("the health check", client.get("/healthz"))
    finally:
        client.close()
    for rec in caplog.records:
        outputs.add(f"tracking log line {rec.name}", logging.Formatter().format(rec))
    return statuses


# -- the tests -----------------------------------------------------------------------------------------


def test_no_secret_in_any_output(desk: Desk, caplog: pytest.LogCaptureFixture) -> None:
    """Sending, refusals, pre-flight, missing credentials, a bad file, webhooks, and every report after."""
    gated = desk.work / "gated.yaml"
    gated.write_text(APPROVAL + CAMPAIGN)
    invalid = desk.work / "invalid.yaml"
    invalid.write_text(INVALID)

    # a campaign file with mistakes: its problems, and nothing started
    rejected = desk.clarion(["run", str(invalid), "--run-id", "secrets-invalid"])
    assert rejected.returncode == 1 and "+1555" in rejected.stderr, rejected.stderr
    assert desk.clarion(["validate", str(invalid)]).returncode == 1

    # a run that sends, X by OAuth 1.0a (all four X secrets), with Prefect's logs shown
    ok = desk.clarion(["run", str(desk.campaign), "--run-id", "secrets-ok", "--json", "--verbose"])
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert json.loads(ok.stdout)["status"] == "completed"
    assert {m["provider"] for m in desk.box.state.store.messages()} == {"sendgrid", "twilio", "x"}

    # the providers refusing everything: the send errors, then the pre-flight checks' messages
    desk.box.refuse_everything()
    refused = desk.clarion(
        ["run", str(desk.campaign), "--run-id", "secrets-refused", "--json"], desk.oauth2()
    )
    assert refused.returncode == 0, refused.stderr[-3000:]
    results = json.loads(refused.stdout)["results"]
    assert all(r["failed"] and not r["sent"] for r in results), results
    preflight = desk.clarion(["run", str(gated), "--run-id", "secrets-preflight"], desk.oauth2())
    assert preflight.returncode == 1
    for emulator in desk.box.state.emulators.values():
        emulator.reset()

    # X's OAuth 1.0a keys half given: the credentials error
    half = {k: v for k, v in desk.env.items() if k != "X_API_SECRET"}
    incomplete = desk.clarion(["run", str(desk.campaign), "--run-id", "secrets-half-oauth1"], half)
    assert incomplete.returncode == 1, incomplete.stderr
    assert "channel 'x': OAuth 1.0a needs all four keys; X_API_SECRET missing" in incomplete.stderr

    # what providers, supporters and forgers send to the tracking service
    statuses = exercise_tracking(desk, caplog)
    assert statuses["a SendGrid event"] == statuses["a Twilio callback"] == statuses["a conversion"] == 200
    assert (
        statuses["a forged SendGrid event"] == statuses["a Twilio callback signed with another token"] == 403
    )
    assert statuses["a click"] == 302 and statuses["a forged click"] == 404

    # what a user reads afterwards, once the posts' metrics are pulled in
    collected = desk.clarion(["collect", "secrets-ok"], desk.oauth2())
    assert collected.returncode == 0, collected.stderr
    for args in [
        ["runs", "--json"],
        ["status", "secrets-preflight"],
        ["status", "secrets-ok", "--json"],
        ["status", "secrets-refused", "--json"],
        ["report", "secrets-ok", "--json", "--html", str(desk.tmp / "report.html")],
        ["report", "secrets-ok", "--csv"],
        ["report", "secrets-ok"],
        ["suppress", "export", "--include-lifted"],
        ["suppress", "list"],
        ["reconcile", "secrets-ok", "--json"],
        ["reconcile", "secrets-refused", "--grace", "0s"],
    ]:
        read = desk.clarion(args)
        assert read.returncode == 0, read.stderr
    assert "pre-flight failed" in desk.outputs.texts["`clarion status secrets-preflight` stdout"]

    runs = ["secrets-ok", "secrets-refused", "secrets-preflight", "secrets-half-oauth1", "collect-secrets-ok"]
    leaks = desk.leaks(runs)

    # the test saw what it meant to: the canaries were the credentials, and the outputs were there
    canary = desk.canaries.values
    assert not (desk.home / "secret.key").exists(), (
        "the signing key came from CLARION_SECRET_KEY: none generated"
    )
    auth = "\n".join(desk.box.authorizations)
    assert f"Bearer {canary['SENDGRID_API_KEY']}" in auth
    assert f"Basic {desk.canaries.twilio_basic}" in auth
    assert f"Bearer {canary['X_ACCESS_TOKEN']}" in auth
    assert f'oauth_consumer_key="{canary["X_API_KEY"]}"' in auth
    assert f'oauth_token="{canary["X_ACCESS_TOKEN"]}"' in auth
    assert all(desk.tables[t] for t in ("runs", "sends", "events", "clicks", "conversions")), desk.tables
    assert {"results-secrets-ok", "approval-secrets-preflight", "results-secrets-refused"} <= desk.artifacts
    assert any(
        "rejected (403)" in text for where, text in desk.outputs.texts.items() if "tracking log" in where
    )
    files = desk.outputs.blobs
    assert {"file report.html", "file home/clarion.db"} <= set(files), sorted(files)
    assert not leaks, "secrets in outputs:\n" + "\n".join(leaks)


SOCIAL = """\
  bluesky:
    provider: bluesky
    body: "{{ variant.headline }} {{ link }}"
  mastodon:
    provider: mastodon
    body: "{{ variant.headline }} {{ link }}"
  linkedin:
    provider: linkedin
    body: "{{ variant.headline }} {{ link }}"
  threads:
    provider: threads
    body: "{{ variant.headline }} {{ link }}"
"""


def test_no_secret_of_the_social_networks_in_any_output(desk: Desk) -> None:
    """Bluesky, Mastodon, LinkedIn and Threads beside the others: sending (their SDKs' and httpx's loggers
    at DEBUG), refusals, pre-flight, metrics, reconcile and reports."""
    campaign = desk.work / "social.yaml"
    campaign.write_text(CAMPAIGN + SOCIAL)
    gated = desk.work / "social-gated.yaml"
    gated.write_text(APPROVAL + CAMPAIGN + SOCIAL)
    debugging = {
        **desk.oauth2(),
        "PREFECT_LOGGING_ROOT_LEVEL": "DEBUG",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "clarion,channels,httpx,httpcore,atproto,atproto_client,mastodon,"
        "requests,urllib3",
    }

    ok = desk.clarion(["run", str(campaign), "--run-id", "social-ok", "--json", "--verbose"], debugging)
    assert ok.returncode == 0, ok.stderr[-3000:]
    networks = {"bluesky", "mastodon", "linkedin", "threads"}
    assert networks <= {m["provider"] for m in desk.box.state.store.messages()}
    desk.box.refuse_everything()
    refused = desk.clarion(["run", str(campaign), "--run-id", "social-refused", "--json"], debugging)
    assert refused.returncode == 0, refused.stderr[-3000:]
    results = json.loads(refused.stdout)["results"]
    assert all(r["failed"] and not r["sent"] for r in results if r["channel"] in networks), results
    preflight = desk.clarion(["run", str(gated), "--run-id", "social-preflight"], desk.oauth2())
    assert preflight.returncode == 1
    for emulator in desk.box.state.emulators.values():
        emulator.reset()
    assert desk.clarion(["collect", "social-ok"], desk.oauth2()).returncode == 0
    for args in [
        ["status", "social-preflight"],
        ["report", "social-ok"],
        ["report", "social-ok", "--json"],
        ["reconcile", "social-ok", "--json"],
    ]:
        assert desk.clarion(args, desk.oauth2()).returncode == 0

    leaks = desk.leaks(["social-ok", "social-refused", "social-preflight", "collect-social-ok"])

    auth = "\n".join(desk.box.authorizations)
    for name in ("MASTODON_ACCESS_TOKEN", "LINKEDIN_ACCESS_TOKEN", "THREADS_ACCESS_TOKEN"):
        assert f"Bearer {desk.canaries.values[name]}" in auth, name
    sessions = [r for r in desk.box.state.store.requests("bluesky") if r["path"].endswith("createSession")]
    assert sessions, "Bluesky was signed in to with the canary app password"
    assert not leaks, "secrets in outputs:\n" + "\n".join(leaks)


def test_no_secret_in_debug_logs(desk: Desk) -> None:
    """Someone debugging a launch: every logger of the process at DEBUG, the SDKs' loggers shipped to the
    Prefect server too (PREFECT_LOGGING_EXTRA_LOGGERS); X by OAuth 1.0a, then refused by OAuth 2.0."""
    debugging = {
        **desk.env,
        "PREFECT_LOGGING_ROOT_LEVEL": "DEBUG",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "clarion,channels,flows,twilio,tweepy,python_http_client,sendgrid,"
        "requests_oauthlib,oauthlib,requests,urllib3,sqlalchemy,alembic",
    }
    ok = desk.clarion(
        ["run", str(desk.campaign), "--run-id", "secrets-debug", "--json", "--verbose"], debugging
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "| DEBUG   | urllib3" in ok.stderr, "the SDKs' own loggers spoke at DEBUG"
    assert {m["provider"] for m in desk.box.state.store.messages()} == {"sendgrid", "twilio", "x"}
    desk.box.refuse_everything()
    oauth2 = {k: v for k, v in debugging.items() if k not in X_OAUTH1}
    refused = desk.clarion(
        ["run", str(desk.campaign), "--run-id", "secrets-debug-refused", "--verbose"], oauth2
    )
    assert refused.returncode == 0, refused.stderr[-3000:]
    leaks = desk.leaks(["secrets-debug", "secrets-debug-refused"])
    assert not leaks, "secrets in outputs:\n" + "\n".join(leaks)


def test_database_password_never_shown(desk: Desk) -> None:
    """The ledger's database URL carries a password, and its server does not answer."""
    password = desk.canaries.values["database password"]
    env = {**desk.env, "CLARION_DATABASE_URL": f"postgresql+psycopg://clarion:{password}@127.0.0.1:9/ledger"}
    listed = desk.clarion(["runs"], env)
    assert listed.returncode == 1 and "clarion:***@127.0.0.1:9/ledger" in listed.stderr, listed.stderr
    run = desk.clarion(["run", str(desk.campaign), "--run-id", "secrets-no-ledger", "--json"], env)
    assert run.returncode == 1 and "clarion:***@127.0.0.1:9/ledger" in run.stderr, run.stderr
    leaks = desk.leaks(["secrets-no-ledger"])
    assert not leaks, "secrets in outputs:\n" + "\n".join(leaks)
