"""The supervisors' wallboard: a page, and the server-sent event stream that keeps it live.

The stream opens with a ``snapshot`` (the whole live view and the number of its last change),
then sends ``changes``: JSON arrays of the changes published since, in order, as fast as the
browser takes them (each write waits for the socket to drain, so one batch carries whatever
piled up meanwhile). A browser that falls a whole backlog behind gets a new snapshot instead.
Server-sent events rather than a WebSocket: the flow is one way, EventSource reconnects by
itself, and aiohttp-sse handles pings and stalled clients.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp_sse import sse_response

if TYPE_CHECKING:
    from ivr.app import Hotline

PAGE = Path(__file__).resolve().parent / "static" / "wallboard.html"


async def page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


async def stream(request: web.Request, hotline: Hotline) -> web.StreamResponse:
    live = hotline.live
    if live is None:
        raise web.HTTPServiceUnavailable(text="live state not ready")
    feed = hotline.live_feed
    async with sse_response(request, send_timeout=10.0) as response:
        # Subscribe and snapshot in one step (no await between): the backlog starts right after it.
        subscription = feed.subscribe()
        if subscription.closed:
            return response
        snapshot = json.dumps(live.snapshot(), separators=(",", ":"))
        # A browser that goes away ends the pings; that must end the wait for changes too.
        gone = asyncio.create_task(response.wait(), name="wallboard-client")
        gone.add_done_callback(lambda _: subscription.close())
        try:
            await response.send(snapshot, event="snapshot")
            while True:
                changes = await subscription.next_changes()
                if subscription.closed:
                    break
                if subscription.lagged:
                    subscription.resume()
                    await response.send(json.dumps(live.snapshot(), separators=(",", ":")), event="snapshot")
                    continue
                await response.send("[" + ",".join(changes) + "]", event="changes")
        except (ConnectionResetError, TimeoutError):
            pass  # the browser went away or stalled; aiohttp-sse has aborted the connection
        finally:
            subscription.close()
            gone.cancel()
    return response
