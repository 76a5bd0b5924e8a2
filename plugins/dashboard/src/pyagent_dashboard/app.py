"""The dashboard as an ASGI application: :func:`create_app` and the :class:`Dashboard` behind it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyagent.plugin import ConfigurationError, TaskStatus, Workflow
from pyagent_dashboard import fmt, security
from pyagent_dashboard.data import RunSource
from pyagent_dashboard.pages import Page, default_pages

HERE = Path(__file__).parent
TOKEN_ENV = "PYAGENT_DASHBOARD_TOKEN"
IDENTITY_ENV = "PYAGENT_DASHBOARD_IDENTITY"
NAME_COOKIE = "pyagent_dashboard_name"
MAX_NAME = 80
#: Who answers: a fixed name, or a function of the request (a header an authenticating proxy sets).
Identity = str | Callable[[Request], str | None] | None
MAX_FORM_BYTES = 64 * 1024


class Dashboard:
    """What every page shares: the store, the workflows it knows, security settings, rendering."""

    def __init__(self, source: RunSource, *, orchestrator: Any = None, workflows: Iterable[Any] = (),
                 read_only: bool = True, token: str | None = None, pages: list[Page] | None = None,
                 poll_interval: float = 1.0, title: str = "pyagent", host: Any = None,
                 identity: Identity = None) -> None:
        self.source = source
        #: Who answers questions from this dashboard (None: each person gives their name in the form).
        self.identity = identity
        self.orchestrator = orchestrator
        #: The serving orchestrator's TriggerHost when mounted by ``pyagent serve`` (None otherwise).
        self.host = host
        self.read_only = read_only
        self.token = token or None
        self.poll_interval = poll_interval
        self.title = title
        self.pages = list(pages) if pages is not None else default_pages()
        self.notices: dict[str, str] = {}
        self.closing = False
        self._tasks: set[Any] = set()
        self._task_group: Any = None
        self._workflows: dict[str, Workflow] = {}
        for wf in workflows:
            self._workflows[wf.name] = wf
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.globals.update(fmt=fmt, dashboard=self)
        self.env.filters.update(when=fmt.when, duration=fmt.duration, status=fmt.status_of)

    # -- workflows and actions -------------------------------------------------------------

    def workflow(self, name: str) -> Workflow | None:
        """The definition of workflow ``name``, when the dashboard was given it."""
        if self.orchestrator is not None:
            wf = getattr(self.orchestrator, "workflows", {}).get(name)
            if wf is not None:
                return wf  # type: ignore[no-any-return]
        return self._workflows.get(name)

    @property
    def workflow_names(self) -> list[str]:
        names = set(self._workflows)
        if self.orchestrator is not None:
            names |= set(getattr(self.orchestrator, "workflows", {}))
        return sorted(names)

    def running_here(self, workflow: str, run_id: str) -> bool:
        """Whether run ``run_id`` is going on in this process (so it can be cancelled from here)."""
        wf = self.workflow(workflow)
        if wf is None:
            return False
        try:
            return wf.get_state(run_id).status is TaskStatus.RUNNING
        except Exception:
            return False

    def serving_here(self) -> bool:
        """Whether the dashboard runs inside the serving process of its store's runs, so that
        resumed runs are the host's (bounded, and checkpointed at shutdown like the others)."""
        host = self.host
        return host is not None and bool(getattr(host, "accepting", False)) and host.store == self.source.url

    def schedules(self) -> list[Any]:
        """The orchestrator's schedule triggers (any kind that is a ``ScheduleTrigger``), live."""
        from pyagent.plugin import ScheduleTrigger

        if self.orchestrator is None:
            return []
        return [t for t in list(getattr(self.orchestrator, "triggers", ())) if isinstance(t, ScheduleTrigger)]

    # -- answering questions -----------------------------------------------------------------

    def configured_identity(self, request: Request) -> str | None:
        """The name answers are recorded under by configuration (``identity=``), or None: ask."""
        identity = self.identity
        if callable(identity):
            identity = identity(request)
        if identity is None:
            return None
        name = " ".join(str(identity).split())
        return name[:MAX_NAME] or None

    def answerer(self, request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
        """Who answers: the configured identity, else the name given in the form; or why not."""
        configured = self.configured_identity(request)
        if configured is not None:
            return configured, None
        name = " ".join(form.get("answered_by", "").split())
        if not name:
            return None, "give your name: it is recorded with the answer (answered_by)"
        if len(name) > MAX_NAME:
            return None, f"a name of at most {MAX_NAME} characters, please"
        return name, None

    def remembered_name(self, request: Request) -> str:
        return request.cookies.get(NAME_COOKIE, "")[:MAX_NAME]

    async def answer(self, run_id: str, interrupt_id: str, value: Any, answered_by: str) -> Any:
        """Record an answer and continue the run; raises as the kernel refuses (schema mismatch,
        unknown id, answered already). Through the serving host when there is one (it wakes the
        run at once), else recorded here and the run continued through the orchestrator."""
        host = self.host
        if host is not None and host.store == self.source.url:
            return await host.answer(run_id, interrupt_id, value, answered_by=answered_by)
        from pyagent.plugin import get_runtime, record_answer

        answered = await record_answer(await self.source.store(), run_id, interrupt_id, value,
                                       answered_by=answered_by, clock=get_runtime().clock,
                                       where=self.source.display_url)
        orchestrator = self.orchestrator
        if orchestrator is not None:
            async def go_on() -> None:
                try:
                    result = await orchestrator.resume(run_id)
                except Exception as exc:
                    self.notices[run_id] = f"The answer is recorded, but continuing the run failed: " \
                                           f"{type(exc).__name__}: {exc}"
                else:
                    if result is not None:
                        self.notices[run_id] = f"Answered from the dashboard: the run {result.status.value}."

            self.spawn(go_on)
        return answered

    def spawn(self, fn: Callable[[], Awaitable[Any]]) -> None:
        """Run ``fn`` in the background, beyond the request that started it."""
        if self._task_group is not None:
            self._task_group.start_soon(fn)
            return
        import asyncio  # mounted without our lifespan: the server's loop (uvicorn's is asyncio)

        task = asyncio.get_running_loop().create_task(fn())  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Dashboard]:
        """The dashboard's lifetime: background actions run inside it; the store closes after it.

        The app's lifespan enters it; an application that mounts the dashboard enters it from
        its own lifespan.
        """
        import anyio

        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                yield self
                self.closing = True
                tg.cancel_scope.cancel()
        finally:
            self._task_group = None
            self.closing = True
            await self.source.close()

    # -- rendering -------------------------------------------------------------------------

    def base(self, request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def url(self, request: Request, path: str, **query: Any) -> str:
        q = urllib.parse.urlencode({k: v for k, v in query.items() if v not in (None, "")})
        return f"{self.base(request)}{path}" + (f"?{q}" if q else "")

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        csrf = request.cookies.get(security.CSRF_COOKIE) or security.new_csrf_token()
        nav = [p for p in self.pages if p.nav and p.offered(self)]
        html = self.env.get_template(template).render(
            request=request, base=self.base(request), csrf=csrf, nav=nav, read_only=self.read_only,
            signed_in=self.token is not None and security.same(
                request.cookies.get(security.SESSION_COOKIE), security.session_value(self.token)),
            url=lambda path, **q: self.url(request, path, **q),
            **context)
        response = HTMLResponse(html, status_code=status_code)
        if request.cookies.get(security.CSRF_COOKIE) != csrf:
            response.set_cookie(security.CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                                path=self.base(request) or "/", secure=request.url.scheme == "https")
        return response

    def error(self, request: Request, status_code: int, message: str) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return self.render(request, "error.html", status_code=status_code, message=message)
        return PlainTextResponse(message + "\n", status_code=status_code)

    # -- security --------------------------------------------------------------------------

    def authenticated(self, request: Request | Scope) -> bool:
        if self.token is None:
            return True
        req = request if isinstance(request, Request) else Request(request)
        given = security.bearer(req.headers)
        if given is not None:
            return security.same(given, self.token)
        return security.same(req.cookies.get(security.SESSION_COOKIE), security.session_value(self.token))

    async def form(self, request: Request) -> dict[str, str]:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                break
        if len(body) > MAX_FORM_BYTES:
            return {}
        pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return dict(pairs)

    def refusal(self, request: Request, form: dict[str, str], *, action: bool = True) -> Response | None:
        """Why a POST is refused (read-only, no CSRF token, another origin), or None to go on."""
        if action and self.read_only:
            return self.error(request, 403, "this dashboard is read-only: it takes no action (cancel, resume, "
                                            "pause, answer)")
        origin = request.headers.get("origin")
        if origin and origin != "null":
            here = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin != here:
                return self.error(request, 403, f"refused: the request came from another origin ({origin})")
        if security.bearer(request.headers) is not None:
            return None  # a bearer token is no ambient credential: no CSRF possible
        given = form.get(security.CSRF_FIELD) or request.headers.get(security.CSRF_HEADER)
        if not security.same(given, request.cookies.get(security.CSRF_COOKIE)):
            return self.error(request, 403, "refused: the form's CSRF token is missing or does not match "
                                            "(reload the page and try again)")
        return None

    def fingerprint(self, *parts: Any) -> str:
        return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:16]


class Gate:
    """Every request but the login page and static files needs the token; headers for every response."""

    OPEN = ("/login", "/static/")

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", b"default-src 'self'; script-src 'self'; "
                     b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
                     b"base-uri 'none'; form-action 'self'"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        path = scope.get("path", "")
        root = scope.get("root_path", "")
        local = path[len(root):] if root and path.startswith(root) else path
        if self.dashboard.token is not None and not local.startswith(self.OPEN) \
                and not self.dashboard.authenticated(scope):
            request = Request(scope)
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                query = scope.get("query_string", b"").decode("latin-1")
                target = self.dashboard.url(request, "/login", next=(local or "/") + (f"?{query}" if query else ""))
                response: Response = RedirectResponse(target, status_code=303)
            else:
                response = PlainTextResponse("a token is needed: send Authorization: Bearer TOKEN, "
                                             "or sign in at /login\n", status_code=401,
                                             headers={"www-authenticate": 'Bearer realm="pyagent dashboard"'})
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _login_routes(dashboard: Dashboard) -> list[Route]:
    async def login_form(request: Request) -> Response:
        if dashboard.token is None:
            return RedirectResponse(dashboard.url(request, "/runs"), status_code=303)
        return dashboard.render(request, "login.html", next=_safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        form = await dashboard.form(request)
        refused = dashboard.refusal(request, form, action=False)
        if refused is not None:
            return refused
        target = _safe_next(form.get("next"))
        if dashboard.token is None:
            return RedirectResponse(dashboard.url(request, target), status_code=303)
        if not security.same(form.get("token", ""), dashboard.token):
            return dashboard.render(request, "login.html", status_code=401, next=target,
                                    problem="That token is not the dashboard's token.")
        response = RedirectResponse(dashboard.url(request, target), status_code=303)
        response.set_cookie(security.SESSION_COOKIE, security.session_value(dashboard.token), httponly=True,
                            samesite="strict", path=dashboard.base(request) or "/",
                            secure=request.url.scheme == "https")
        return response

    async def logout(request: Request) -> Response:
        form = await dashboard.form(request)
        refused = dashboard.refusal(request, form, action=False)
        if refused is not None:
            return refused
        response = RedirectResponse(dashboard.url(request, "/login"), status_code=303)
        response.delete_cookie(security.SESSION_COOKIE, path=dashboard.base(request) or "/")
        return response

    async def home(request: Request) -> Response:
        return RedirectResponse(dashboard.url(request, "/runs"), status_code=303)

    return [Route("/", home), Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]), Route("/logout", logout, methods=["POST"])]


def _safe_next(value: str | None) -> str:
    """Only a path inside the dashboard: never another site (an open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/runs"
    return value


def create_app(storage: str | None = None, *, orchestrator: Any = None, workflows: Iterable[Any] = (),
               read_only: bool | None = None, token: str | None = None, pages: list[Page] | None = None,
               poll_interval: float = 1.0, title: str = "pyagent", host: Any = None,
               identity: Identity = None) -> Starlette:
    """The dashboard as a starlette (ASGI) application.

    ``storage``: the store URL whose runs it shows (default: the orchestrator's ``store``, else
    the checkpoint storage of its first checkpointed workflow). ``orchestrator`` and
    ``workflows``: workflow definitions, for drawing their graphs and resuming their runs.
    ``read_only`` (default: True without an orchestrator): no cancel or resume, and such
    requests are refused (403). ``token`` (default: ``PYAGENT_DASHBOARD_TOKEN``): needed on
    every page and action. ``pages``: the pages it serves (default :func:`default_pages`).
    ``poll_interval``: seconds between the store reads behind live updates. ``host``: the
    serving orchestrator's ``TriggerHost`` (what ``pyagent serve`` passes): runs are then
    resumed as the host's runs, answered questions wake it, and the orchestrator defaults to
    the host's. ``identity`` (default: ``PYAGENT_DASHBOARD_IDENTITY``): the name answers to
    questions are recorded under (``answered_by``), or a function of the request returning it
    (e.g. a header an authenticating proxy sets); without one, the approvals form asks for a name.

    The app's lifespan opens nothing and closes the store; when mounting the app in another,
    enter ``app.state.dashboard.running()`` from that application's lifespan so that resumed
    runs live as long as the server does.
    """
    if orchestrator is None and host is not None:
        orchestrator = host.orchestrator
    if storage is None and host is not None:
        storage = host.store
    if storage is None and orchestrator is not None:
        storage = getattr(orchestrator, "store", None)
        if storage is None:
            for wf in getattr(orchestrator, "workflows", {}).values():
                cp = getattr(wf, "checkpointing", None)
                if cp is not None and cp.enabled:
                    storage = cp.storage
                    break
    if not storage:
        raise ConfigurationError(
            "the dashboard needs a store to read runs from: create_app(storage='sqlite://runs.db'), "
            "or an orchestrator with Orchestrator(store=...)")
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if identity is None:
        identity = os.environ.get(IDENTITY_ENV) or None
    if identity is not None and not callable(identity) and not isinstance(identity, str):
        raise ConfigurationError(f"identity={identity!r} must be a name (a string) or a function of the request "
                                 "returning one")
    if read_only is None:
        read_only = orchestrator is None
    if poll_interval <= 0:
        raise ConfigurationError(f"poll_interval={poll_interval!r} must be a number of seconds > 0")
    dashboard = Dashboard(RunSource(storage), orchestrator=orchestrator, workflows=workflows,
                          read_only=read_only, token=token, pages=pages, poll_interval=poll_interval,
                          title=title, host=host, identity=identity)
    routes: list[Any] = [*_login_routes(dashboard)]
    for page in dashboard.pages:
        routes += page.routes(dashboard)
    routes.append(Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with dashboard.running():
            yield

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    app.add_middleware(Gate, dashboard=dashboard)
    return app
