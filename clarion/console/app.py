"""The console: operators watch runs, read results as they come in, answer approvals and look up
suppressions, in a browser (a phone will do). Server-rendered HTML (Jinja, autoescaped), live through
server-sent events (live.py), a few lines of our own JavaScript and CSS shipped in the package: no CDN.

    GET  /console/                      runs: state, per channel planned/sent/deferred/failed/uncertain, skew
    GET  /console/runs/{run}            one run: what it waits for, and its report (tables, charts, verdicts)
    GET  /console/approvals             runs at their approval gate: checks, counts, every message
    POST /console/runs/{run}/approve    (and /reject): through clarion.flows.approval.answer
    GET  /console/suppressions          look up an address (POST, so the address stays out of URLs and logs)
    GET  /console/live/{page}           the pages' live fragments (server-sent events)
    GET|POST /console/sign-in, POST /console/sign-out

Nothing but the sign-in form is shown to someone not signed in. See auth.py for tokens, sessions and the
proxy's user header, security.py for the headers and the same-origin rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from clarion.analysis.report import FILTERS, report_templates
from clarion.base.errors import ClarionError
from clarion.base.settings import ConsoleSettings
from clarion.console import auth, live
from clarion.console.security import SecurityHeaders, peer, read_form, same_origin
from clarion.console.views import Views
from clarion.ledger import Ledger
from clarion.ledger.console import ConsoleSession
from clarion.tracking.optouts import ClientLimits

HERE = Path(__file__).resolve().parent
REPORT_EVERY = 5  # a run page's report is re-rendered every fifth poll of its live stream (the statistics)
SIGN_IN_LIMIT = "10/minute"  # failed sign-ins per client address before it gets 429 for the minute


@dataclass
class Console:
    ledger: Ledger
    settings: ConsoleSettings
    views: Views
    trusted: auth.Trusted
    limits: ClientLimits
    env: jinja2.Environment
    extra_tokens: dict[str, str]  # one-off tokens of an in-process console (`clarion run --console`)


def build_console(
    ledger: Ledger,
    *,
    settings: ConsoleSettings | None = None,
    extra_tokens: dict[str, str] | None = None,
) -> Any:
    """The console as an ASGI app, to mount at /console (see `mount`)."""
    settings = settings or ConsoleSettings()
    trusted = auth.Trusted(settings.clarion_console_trusted_proxies)
    if settings.clarion_console_user_header and not trusted:
        raise ClarionError(
            "CLARION_CONSOLE_USER_HEADER is set without CLARION_CONSOLE_TRUSTED_PROXIES: name the reverse "
            "proxies whose header is believed (e.g. 127.0.0.1), or unset the header"
        )
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(HERE / "templates"), report_templates()]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(FILTERS)
    console = Console(
        ledger,
        settings,
        Views(ledger),
        trusted,
        ClientLimits("off", SIGN_IN_LIMIT),
        env,
        dict(extra_tokens or {}),
    )
    handlers = _Handlers(console)
    routes = [
        Route("/", handlers.runs),
        Route("/runs/{run_id}", handlers.run),
        Route("/runs/{run_id}/approve", handlers.approve, methods=["POST"]),
        Route("/runs/{run_id}/reject", handlers.reject, methods=["POST"]),
        Route("/approvals", handlers.approvals),
        Route("/suppressions", handlers.suppressions, methods=["GET", "POST"]),
        Route("/live/{page}", handlers.live),
        Route("/sign-in", handlers.sign_in, methods=["GET", "POST"]),
        Route("/sign-out", handlers.sign_out, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.console = console
    return SecurityHeaders(app)


def mount(app: Starlette, console: Any) -> Starlette:
    """Serve `console` at /console of `app` (the tracking service): /console itself redirects to /console/."""
    app.router.routes[:0] = [
        Route("/console", lambda request: RedirectResponse("/console/", status_code=308)),
        Mount("/console", app=console),
    ]
    return app


class _Handlers:
    def __init__(self, console: Console) -> None:
        self.c = console

    # -- who is asking ------------------------------------------------------------------------------

    async def _session(self, request: Request) -> tuple[ConsoleSession | None, str | None]:
        """The signed-in session, and a new cookie to set (a proxy-authenticated user's first request)."""
        c = self.c
        cookie = request.cookies.get(auth.COOKIE)
        found = None
        if cookie:
            found = await anyio.to_thread.run_sync(c.ledger.session, auth.session_id(cookie), _now())
        header = c.settings.clarion_console_user_header
        if header and peer(request) in c.trusted:
            user = request.headers.get(header, "").strip()
            if user and (found is None or found.user_name != user or found.via != "proxy"):
                made = auth.new_session(user, "proxy", c.settings.clarion_console_session_hours)
                await anyio.to_thread.run_sync(c.ledger.start_session, made.session)
                return made.session, made.cookie
            if not user:
                return (found if found is not None and found.via != "proxy" else None), None
        elif found is not None and found.via == "proxy":
            return None, None  # a proxy session is good only through the proxy
        return found, None

    def _page(self, request: Request, name: str, session: ConsoleSession | None, **context: Any) -> Response:
        base = request.scope.get("root_path", "")
        html = self.c.env.get_template(name).render(
            base=base,
            user=session.user_name if session else None,
            csrf=session.csrf if session else "",
            flash=session.flash if session else None,
            **context,
        )
        return HTMLResponse(html)

    async def _guard(self, request: Request) -> tuple[ConsoleSession | None, Response | None, str | None]:
        session, cookie = await self._session(request)
        if session is None:
            base = request.scope.get("root_path", "")
            return None, RedirectResponse(f"{base}/sign-in", status_code=303), None
        return session, None, cookie

    def _finish(self, response: Response, request: Request, cookie: str | None) -> Response:
        if cookie is not None:
            _set_cookie(response, request, auth.COOKIE, cookie, self.c.settings.clarion_console_session_hours)
        return response

    async def _clear_flash(self, session: ConsoleSession) -> None:
        if session.flash:
            await anyio.to_thread.run_sync(self.c.ledger.set_flash, session.id, None)

    # -- pages --------------------------------------------------------------------------------------

    async def runs(self, request: Request) -> Response:
        session, redirect, cookie = await self._guard(request)
        if session is None:
            return redirect or _forbidden()
        runs = await anyio.to_thread.run_sync(self.c.views.runs)
        await self._clear_flash(session)
        page = self._page(request, "runs.html.j2", session, runs=runs, live="runs")
        return self._finish(page, request, cookie)

    async def run(self, request: Request) -> Response:
        session, redirect, cookie = await self._guard(request)
        if session is None:
            return redirect or _forbidden()
        run_id = request.path_params["run_id"]
        run = await anyio.to_thread.run_sync(self.c.views.run, run_id)
        if run is None:
            return PlainTextResponse("No such run.\n", status_code=404)
        report = await anyio.to_thread.run_sync(self.c.views.report, run_id)
        await self._clear_flash(session)
        page = self._page(
            request, "run.html.j2", session, run=run, report=report, live=f"run?id={quote(run_id)}"
        )
        return self._finish(page, request, cookie)

    async def approvals(self, request: Request) -> Response:
        session, redirect, cookie = await self._guard(request)
        if session is None:
            return redirect or _forbidden()
        waiting = await anyio.to_thread.run_sync(self.c.views.approvals, session.user_name)
        await self._clear_flash(session)
        page = self._page(request, "approvals.html.j2", session, approvals=waiting, live="approvals")
        return self._finish(page, request, cookie)

    async def suppressions(self, request: Request) -> Response:
        session, redirect, cookie = await self._guard(request)
        if session is None:
            return redirect or _forbidden()
        result = None
        if request.method == "POST":
            form = await self._checked_form(request, session)
            if form is None:
                return _forbidden()
            result = await anyio.to_thread.run_sync(self.c.views.lookup, form.get("address", "")[:320])
        counts = await anyio.to_thread.run_sync(self.c.views.counts)
        page = self._page(request, "suppressions.html.j2", session, result=result, counts=counts, live=None)
        return self._finish(page, request, cookie)

    async def live(self, request: Request) -> Response:
        session, _cookie = await self._session(request)
        if session is None:
            return PlainTextResponse("Sign in first.\n", status_code=401)
        page, env, views = request.path_params["page"], self.c.env, self.c.views
        base = request.scope.get("root_path", "")
        run_id = request.query_params.get("id", "")
        user, csrf = session.user_name, session.csrf
        report: dict[str, str] = {}
        polls = [1]  # the page came with its report: the stream's first one is due in REPORT_EVERY polls

        def render() -> dict[str, str]:
            if page == "runs":
                return {"runs-table": env.get_template("_runs.html.j2").render(base=base, runs=views.runs())}
            if page == "run":
                run = views.run(run_id)
                if run is None:
                    return {}
                if polls[0] % REPORT_EVERY == 0:  # the statistics cost more than the counts
                    report["run-report"] = env.get_template("_report.html.j2").render(
                        report=views.report(run_id)
                    )
                polls[0] += 1
                summary = env.get_template("_run_summary.html.j2").render(base=base, run=run)
                return {"run-summary": summary, **report}
            if page == "approvals":
                found = views.approvals(user)
                html = env.get_template("_approvals.html.j2").render(base=base, approvals=found, csrf=csrf)
                return {"approvals-list": html}
            return {}

        sid = session.id
        events = live.stream(request, render, lambda: self.c.ledger.session(sid, _now()) is not None)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    # -- actions ------------------------------------------------------------------------------------

    async def _checked_form(self, request: Request, session: ConsoleSession) -> dict[str, str] | None:
        """The POST's form if it is same-origin and carries the session's CSRF token; None otherwise."""
        if not same_origin(request):
            return None
        form = await read_form(request)
        if form is None or not auth.same_token(session.csrf, form.get("csrf")):
            return None
        return form

    async def approve(self, request: Request) -> Response:
        return await self._answer(request, approved=True)

    async def reject(self, request: Request) -> Response:
        return await self._answer(request, approved=False)

    async def _answer(self, request: Request, *, approved: bool) -> Response:
        session, redirect, cookie = await self._guard(request)
        if session is None:
            return redirect or _forbidden()
        form = await self._checked_form(request, session)
        if form is None:
            return _forbidden()
        run_id = request.path_params["run_id"]
        base = request.scope.get("root_path", "")
        reason = form.get("reason", "").strip()[:500]
        message, done = await anyio.to_thread.run_sync(
            self._send_answer, run_id, session.user_name, approved, reason
        )
        await anyio.to_thread.run_sync(self.c.ledger.set_flash, session.id, message)
        target = f"{base}/runs/{quote(run_id)}" if approved and done else f"{base}/approvals"
        return self._finish(RedirectResponse(target, status_code=303), request, cookie)

    def _send_answer(self, run_id: str, user: str, approved: bool, reason: str) -> tuple[str, bool]:
        """Answer through the Prefect server the run waits on; the message for the user, and whether it
        was answered."""
        from clarion.flows.approval import answer

        record = self.c.ledger.get_run(run_id)
        if record is None:
            return f"No run {run_id}.", False
        gate = self.c.views.approval(record, user)
        if not gate["may_answer"]:
            return f"Only {', '.join(gate['approvers'])} may answer for run {run_id}.", False
        if not approved and not reason:
            return "Say why you reject it: the reason is kept with the run.", False
        try:
            answer(run_id, approved=approved, approver=user, reason=reason)
        except ClarionError as exc:
            return f"Not answered: {exc}", False
        if approved:
            return f"Approved run {run_id}: it starts sending.", True
        return f"Rejected run {run_id}.", True

    async def sign_in(self, request: Request) -> Response:
        c, base = self.c, request.scope.get("root_path", "")
        client = request.client.host if request.client else "-"
        if request.method == "GET":
            session, _cookie = await self._session(request)
            if session is not None:
                return RedirectResponse(f"{base}/", status_code=303)
            pre = auth.new_session("-", "-", 1).session.csrf
            page = self._page(request, "sign_in.html.j2", None, pre=pre, error=None, live=None)
            _set_cookie(page, request, auth.PRE_COOKIE, pre, 1)
            return page
        if c.limits.blocked(client):
            return PlainTextResponse("Too many attempts; try again in a minute.\n", status_code=429)
        form = await read_form(request) if same_origin(request) else None
        if form is None or not auth.same_token(request.cookies.get(auth.PRE_COOKIE), form.get("csrf")):
            return _forbidden()
        token = form.get("token", "").strip()[:200]
        user = c.extra_tokens.get(token) or await anyio.to_thread.run_sync(
            auth.user_of_token, c.ledger, token
        )
        if user is None:
            c.limits.rejected(client)
            pre = form.get("csrf", "")
            page = self._page(
                request, "sign_in.html.j2", None, pre=pre, error="That token is not valid.", live=None
            )
            page.status_code = 401
            return page
        made = auth.new_session(user, "token", c.settings.clarion_console_session_hours)
        await anyio.to_thread.run_sync(c.ledger.start_session, made.session)
        response = RedirectResponse(f"{base}/", status_code=303)
        response.delete_cookie(auth.PRE_COOKIE, path=base or "/")
        return self._finish(response, request, made.cookie)

    async def sign_out(self, request: Request) -> Response:
        session, _cookie = await self._session(request)
        base = request.scope.get("root_path", "")
        if session is not None:
            if await self._checked_form(request, session) is None:
                return _forbidden()
            await anyio.to_thread.run_sync(self.c.ledger.end_session, session.id)
        response = RedirectResponse(f"{base}/sign-in", status_code=303)
        response.delete_cookie(auth.COOKIE, path=base or "/")
        return response


def _set_cookie(response: Response, request: Request, name: str, value: str, hours: float) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(hours * 3600),
        path=request.scope.get("root_path", "") or "/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def _forbidden() -> Response:
    return PlainTextResponse(
        "Refused: this form is out of date or came from another site. Reload the page and try again.\n",
        status_code=403,
    )


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


__all__ = ["build_console", "mount"]
