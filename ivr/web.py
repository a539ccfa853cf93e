"""HTTP: health, recent outcomes, the live view (pulled, or pushed to the wallboard), admin actions."""

from __future__ import annotations

import hmac
import html
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from aiohttp import web
from redis.exceptions import RedisError

from ivr import wallboard
from ivr.selfservice import BackendUnavailable
from routing.customers import mask_number
from routing.servicelevel import service_levels

if TYPE_CHECKING:
    from ivr.app import Hotline
    from ivr.tickets import Ticket

HOTLINE_KEY = web.AppKey("hotline", object)


def _hotline(request: web.Request) -> Hotline:
    return request.app[HOTLINE_KEY]  # type: ignore[return-value]


async def health(request: web.Request) -> web.Response:
    hotline = _hotline(request)
    redis_ok = False
    try:
        assert hotline.redis is not None
        redis_ok = bool(await hotline.redis.ping())
    except (RedisError, OSError, AssertionError):
        pass
    status = {
        "agi": bool(hotline.agi and hotline.agi.accepting),
        "ami": bool(hotline.ami and hotline.ami.ready),
        "redis": redis_ok,
        "active_calls": hotline.agi.active_sessions if hotline.agi else 0,
        "menu": hotline.menu.name if hotline.menu else None,
    }
    ok = status["agi"] and status["ami"] and status["redis"]
    return web.json_response(status, status=200 if ok else 503)


async def calls(request: web.Request) -> web.Response:
    hotline = _hotline(request)
    assert hotline.outcomes is not None
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be a number") from None
    records = await hotline.outcomes.recent(limit)
    if "text/html" in request.headers.get("Accept", ""):
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(x))}</td>"
                for x in (
                    r.uniqueid,
                    r.caller,
                    r.customer_class,
                    r.disposition.value,
                    r.queue or "",
                    r.agent or "",
                    r.wait_seconds if r.wait_seconds is not None else "",
                    " > ".join(r.menu_path),
                )
            )
            + "</tr>"
            for r in records
        )
        page = (
            "<!doctype html><meta charset=utf-8><title>hotline calls</title><table>"
            "<tr><th>uniqueid<th>caller<th>class<th>disposition<th>queue<th>agent<th>wait<th>path</tr>"
            f"{rows}</table>"
        )
        return web.Response(text=page, content_type="text/html")
    return web.json_response([r.to_json() for r in records], dumps=lambda items: "[" + ",".join(items) + "]")


async def live(request: web.Request) -> web.Response:
    """Queues, agents and waiting callers as the controller sees them (AMI-fed)."""
    hotline = _hotline(request)
    if hotline.live is None:
        raise web.HTTPServiceUnavailable(text="live state not ready")
    levels: dict[str, object] = {}
    if hotline.outcomes is not None and hotline.rules is not None:
        try:
            records = await hotline.outcomes.recent(2000)
        except (RedisError, OSError):
            records = []
        since = time.time() - 3600
        levels = {
            name: {**asdict(level), "percent": level.percent, "met": level.met}
            for name, level in service_levels(records, hotline.rules, since=since).items()
        }
    return web.json_response({
        **hotline.live.snapshot(), "ami": bool(hotline.ami and hotline.ami.ready),
        "service_levels_last_hour": levels,
    })


async def live_stream(request: web.Request) -> web.StreamResponse:
    """The live view pushed as server-sent events (what /wallboard shows)."""
    return await wallboard.stream(request, _hotline(request))


ADMIN_HEADER = "X-Hotline-Admin"


async def reload(request: web.Request) -> web.Response:
    """Publish the edited routing rules and menu (what `hotline reload` and SIGHUP do). Needs the
    admin token in a header: a browser page elsewhere cannot send one without CORS consent."""
    from ivr.app import ReloadRefused
    from ivr.yamldoc import ConfigError

    hotline = _hotline(request)
    if not hmac.compare_digest(request.headers.get(ADMIN_HEADER, ""), hotline.admin_token):
        raise web.HTTPForbidden(text=f"{ADMIN_HEADER} header missing or wrong")
    try:
        result = await hotline.reload()
    except ConfigError as exc:
        return web.json_response({"ok": False, "problems": [str(p) for p in exc.problems]}, status=422)
    except ReloadRefused as exc:
        return web.json_response({"ok": False, "problems": [str(exc)]}, status=422)
    return web.json_response({"ok": True, **result})


async def callbacks(request: web.Request) -> web.Response:
    """Recent virtual-hold callbacks: status, attempts and results, agent (numbers masked)."""
    hotline = _hotline(request)
    if hotline.callbacks is None:
        raise web.HTTPServiceUnavailable(text="callbacks not ready")
    try:
        recent = await hotline.callbacks.recent(100)
    except (RedisError, OSError) as exc:
        raise web.HTTPServiceUnavailable(text=f"Redis unavailable: {exc}") from None
    return web.json_response([{**asdict(c), "number": mask_number(c.number)} for c in recent])


async def speech(request: web.Request) -> web.Response:
    """Speech models and recognition metrics per listen node (attempts, no match, fallbacks, latency)."""
    hotline = _hotline(request)
    if hotline.speech is None:
        raise web.HTTPServiceUnavailable(text="speech not ready")
    return web.json_response(hotline.speech.snapshot())


def _ticket_view(ticket: Ticket) -> dict[str, object]:
    return {**asdict(ticket), "phone": mask_number(ticket.phone), "account": mask_number(ticket.account)}


async def tickets(request: web.Request) -> web.Response:
    """Recent work orders, or ?phone=... for a caller's latest (numbers masked)."""
    hotline = _hotline(request)
    if hotline.tickets is None:
        raise web.HTTPServiceUnavailable(text="tickets not ready")
    try:
        if "phone" in request.query:
            from routing.customers import normalize_number

            latest = await hotline.tickets.latest_for(normalize_number(request.query["phone"]))
            found = [latest] if latest else []
        else:
            found = await hotline.tickets.recent(max(1, min(500, int(request.query.get("limit", "50")))))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be a number") from None
    except BackendUnavailable as exc:
        raise web.HTTPServiceUnavailable(text=f"Redis unavailable: {exc}") from None
    return web.json_response([_ticket_view(t) for t in found])


async def ticket(request: web.Request) -> web.Response:
    hotline = _hotline(request)
    if hotline.tickets is None:
        raise web.HTTPServiceUnavailable(text="tickets not ready")
    try:
        found = await hotline.tickets.get(request.match_info["number"])
    except BackendUnavailable as exc:
        raise web.HTTPServiceUnavailable(text=f"Redis unavailable: {exc}") from None
    if found is None:
        raise web.HTTPNotFound(text="no such ticket")
    return web.json_response(_ticket_view(found))


async def ticket_change(request: web.Request) -> web.Response:
    """POST {"status": "closed", "result": "resolved", "note": ...} or {"status": "in_progress"}
    (admin token needed). Closing schedules the return visit."""
    from ivr.tickets import TicketProblem, TicketStatus
    from routing.revisits import close_ticket

    hotline = _hotline(request)
    if not hmac.compare_digest(request.headers.get(ADMIN_HEADER, ""), hotline.admin_token):
        raise web.HTTPForbidden(text=f"{ADMIN_HEADER} header missing or wrong")
    if hotline.tickets is None or hotline.redis is None or hotline.rules is None:
        raise web.HTTPServiceUnavailable(text="tickets not ready")
    try:
        body = await request.json()
        status = TicketStatus(str(body.get("status", "")))
        note = str(body.get("note", ""))
    except (ValueError, AttributeError):
        raise web.HTTPBadRequest(text='JSON {"status": "closed"|"in_progress", "result": ..., "note": ...}') from None
    number = request.match_info["number"]
    try:
        if status == TicketStatus.CLOSED:
            changed = await close_ticket(hotline.tickets, hotline.redis, hotline.rules, number,
                                         str(body.get("result", "")), note)
        elif status == TicketStatus.IN_PROGRESS:
            changed = await hotline.tickets.set_status(number, status, note=note)
        else:
            raise TicketProblem("only in_progress and closed are set by hand")
    except TicketProblem as exc:
        return web.json_response({"ok": False, "problem": str(exc)}, status=422)
    except BackendUnavailable as exc:
        raise web.HTTPServiceUnavailable(text=f"Redis unavailable: {exc}") from None
    return web.json_response({"ok": True, "ticket": _ticket_view(changed)})


def build_web_app(hotline: Hotline) -> web.Application:
    app = web.Application()
    app[HOTLINE_KEY] = hotline
    app.router.add_get("/health", health)
    app.router.add_get("/api/calls", calls)
    app.router.add_get("/api/live", live)
    app.router.add_get("/api/live/stream", live_stream)
    app.router.add_get("/wallboard", wallboard.page)
    app.router.add_post("/api/reload", reload)
    app.router.add_get("/api/speech", speech)
    app.router.add_get("/api/callbacks", callbacks)
    app.router.add_get("/api/tickets", tickets)
    app.router.add_get("/api/tickets/{number}", ticket)
    app.router.add_post("/api/tickets/{number}", ticket_change)
    app.router.add_get("/", calls)
    return app
