"""The classroom's web server: one page, its assets, a JSON API and a live push.

An aiohttp application in the same event loop as the classroom's gRPC clients
(:class:`~ncbsim.simulations.classroom.room.Classroom`). Routes (docs/classroom.md):

- ``GET /`` the page, ``GET /static/<name>`` its assets, read from the package's
  ``static`` folder only: ncbsim serves everything the page loads, nothing comes from
  elsewhere (a Content-Security-Policy of ``'self'`` says so to the browser too);
- ``GET /api/state`` the network as the page draws it;
- ``GET /api/stream`` server-sent events: ``hello`` with the state, then batches of
  events, exchanges, status lines and lesson steps, from the browser's own bounded
  queue (:mod:`ncbsim.simulations.classroom.hub`);
- ``POST /api/query``, ``/api/face`` (a border camera's face search and its
  confirmation), ``/api/diffuse``, ``/api/notice``, ``/api/notice/withdraw``,
  ``/api/fault``, ``/api/heal``, ``/api/attack``, ``/api/lesson``.

A request the classroom refuses gets HTTP 400 (409 for an attack on a network not in
classroom mode) with ``{"error": "<one sentence>"}``; the server's log gets the route
and the field at fault, never the value typed. Anything else that goes wrong in an
action is a 502 with a short sentence, logged; the server goes on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

import structlog
from aiohttp import web

from ncbsim.errors import ConfigError, NcbsimError
from ncbsim.simulations.classroom import inputs
from ncbsim.simulations.classroom.faces import FaceSearch
from ncbsim.simulations.classroom.hub import Hub
from ncbsim.simulations.classroom.lessons import Lessons
from ncbsim.simulations.classroom.posting import Posting
from ncbsim.simulations.classroom.room import Classroom

log = structlog.get_logger()

KEEPALIVE_S = 15.0
"""A comment line this often on an idle stream, so proxies and browsers keep it open."""
STATIC = "static"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
ROOM: web.AppKey[Classroom] = web.AppKey("room", Classroom)
HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
Action = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
}


def _asset(name: str) -> tuple[bytes, str] | None:
    """A file of the static folder and its media type, or None (no such file)."""
    if "/" in name or "\\" in name or name.startswith(".") or not name:
        return None
    folder = resources.files("ncbsim.simulations.classroom").joinpath(STATIC)
    item = folder.joinpath(name)
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix not in _TYPES or not item.is_file():
        return None
    return item.read_bytes(), _TYPES[suffix]


def _headers(content_type: str) -> dict[str, str]:
    return {
        "Content-Type": f"{content_type}; charset=utf-8"
        if content_type.startswith("text")
        else content_type,
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }


async def page(request: web.Request) -> web.Response:
    """``GET /``: the page."""
    found = _asset("classroom.html")
    if found is None:
        return web.Response(status=500, text="the classroom page is missing from the install")
    return web.Response(body=found[0], headers=_headers(found[1]))


async def static(request: web.Request) -> web.Response:
    """``GET /static/<name>``: one asset of the page."""
    found = _asset(request.match_info["name"])
    if found is None:
        return _error(404, "no such file", request, "name")
    return web.Response(body=found[0], headers=_headers(found[1]))


def _error(status: int, text: str, request: web.Request, field: str = "") -> web.Response:
    log.warning("classroom_refused", route=request.path, status=status, field=field)
    return web.json_response({"error": text}, status=status, headers={"Cache-Control": "no-store"})


async def state(request: web.Request) -> web.Response:
    """``GET /api/state``."""
    room = request.app[ROOM]
    return web.json_response(await asyncio.to_thread(room.state))


async def stream(request: web.Request) -> web.StreamResponse:
    """``GET /api/stream``: server-sent events from this browser's own queue."""
    room, hub = request.app[ROOM], request.app[HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    viewer = hub.join()
    log.info("classroom_viewer_joined", viewers=len(hub.viewers))
    try:
        hello = {"type": "hello", "state": await asyncio.to_thread(room.state)}
        await response.write(_sse(hello))
        reported = 0
        while not viewer.closed:
            messages = await viewer.next(timeout=KEEPALIVE_S)
            if not messages:
                await response.write(b": keepalive\n\n")
                continue
            chunk = bytearray()
            for message in messages:
                sent = message
                if message.get("type") == "events" and viewer.dropped != reported:
                    sent = {**message, "dropped": message.get("dropped", 0) + viewer.dropped}
                    reported = viewer.dropped
                chunk += _sse(sent)
            await response.write(bytes(chunk))
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the browser went away (or the server is stopping)
    finally:
        hub.leave(viewer)
        log.info("classroom_viewer_left", viewers=len(hub.viewers), dropped=viewer.dropped)
    return response


def _sse(message: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"


async def _body(request: web.Request) -> Mapping[str, Any]:
    """The request's JSON object, at most ``inputs.MAX_BODY`` bytes."""
    too_big = inputs.InputError(f"the request is over {inputs.MAX_BODY} bytes", "body", 413)
    if request.content_length is not None and request.content_length > inputs.MAX_BODY:
        raise too_big
    raw = await request.content.read(inputs.MAX_BODY + 1)
    if len(raw) > inputs.MAX_BODY:
        raise too_big
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise inputs.InputError("the request is not JSON", "body") from None
    return inputs.body_object(data)


def _action(name: str, pick: Callable[[Classroom], Action]) -> Any:
    """A POST route calling the room's action ``pick(room)`` with the checked body."""

    async def handler(request: web.Request) -> web.Response:
        room = request.app[ROOM]
        try:
            reply = await pick(room)(await _body(request))
        except inputs.InputError as exc:
            return _error(exc.status, str(exc), request, exc.field)
        except ConfigError as exc:  # e.g. attacks on a network not in classroom mode
            return _error(409, str(exc), request, "mode")
        except NcbsimError as exc:
            log.warning("classroom_action_failed", action=name, error=type(exc).__name__)
            room.hub.publish({"type": "status", "level": "error", "text": f"{name}: {exc}"})
            return _error(502, f"{name} failed: {exc}", request)
        except Exception as exc:  # never a 500 for the room: say what broke, go on
            log.exception("classroom_action_crashed", action=name)
            return _error(502, f"{name} failed: {type(exc).__name__}", request)
        log.info("classroom_action", action=name)
        return web.json_response(reply)

    return handler


_GETS = {"/": page, "/static/{name}": static, "/api/state": state, "/api/stream": stream}
ACTIONS = (
    "query",
    "face",
    "diffuse",
    "notice",
    "notice/withdraw",
    "fault",
    "heal",
    "attack",
    "lesson",
)
"""The actions, each a ``POST /api/<action>`` with a JSON body."""
ROUTES: tuple[tuple[str, str], ...] = tuple(("GET", path) for path in _GETS) + tuple(
    ("POST", f"/api/{action}") for action in ACTIONS
)
"""Every route the app serves, as (method, path): docs/classroom.md's table lists them."""


def make_app(room: Classroom, hub: Hub) -> web.Application:
    """The application serving ``room`` and pushing ``hub``'s messages."""
    app = web.Application(client_max_size=inputs.MAX_BODY)
    app[ROOM] = room
    app[HUB] = hub
    posting, lessons, faces = Posting(room), Lessons(room), FaceSearch(room)

    async def close_lessons(_: web.Application) -> None:
        await lessons.close()

    app.on_cleanup.append(close_lessons)
    for path, get in _GETS.items():
        app.router.add_get(path, get)
    routes: dict[str, Callable[[Classroom], Action]] = {
        "query": lambda r: r.query,
        "face": lambda _: faces.search,
        "diffuse": lambda _: posting.diffuse,
        "notice": lambda _: posting.notice,
        "notice/withdraw": lambda _: posting.withdraw,
        "fault": lambda r: r.fault,
        "heal": lambda r: r.heal,
        "attack": lambda r: r.attack,
        "lesson": lambda _: lessons.run,
    }
    for path in ACTIONS:
        app.router.add_post(f"/api/{path}", _action(path, routes[path]))
    return app
