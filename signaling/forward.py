"""The signaling WebSocket on a worker that does not host call rooms (``TELEMED_WORKERS`` > 1, see clinic.serve).

Every call room and its media relay live in worker 0, so a participant whose connection the kernel handed to
another worker must still meet the others there. This worker opens the same socket on worker 0 (over its Unix
socket, carrying the caller's cookie, origin and address) and passes frames both ways until either side
closes. Only signaling passes through here; media flows between the browser and worker 0's relay directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import WSMsgType, web

from clinic.serve import SIGNAL_OWNER
from clinic.web.api import error_response
from clinic.web.context import services
from clinic.web.live import track
from clinic.web.middleware import client_ip
from signaling import protocol as p

log = logging.getLogger(__name__)

#: Request headers the hosting worker needs to authenticate and check the caller as if it were direct.
_PASSED = ("Cookie", "Origin", "User-Agent", "Accept-Language")
_MAX = 4 * p.MAX_MESSAGE_BYTES


async def forward_socket(request: web.Request) -> web.StreamResponse:
    owner: str = services(request.app).extra[SIGNAL_OWNER]
    headers = {h: v for h in _PASSED if (v := request.headers.get(h)) is not None}
    headers["Host"] = request.host
    headers["X-Forwarded-For"] = client_ip(request)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=owner)) as http:
        try:
            upstream = await http.ws_connect(f"http://worker0{request.path_qs}", headers=headers, max_msg_size=_MAX,
                                             autoping=True, heartbeat=None)
        except aiohttp.WSServerHandshakeError as exc:
            # Refused before the upgrade (bad token, signed out, wrong visit): the same status to the caller.
            return error_response(exc.status, "refused", exc.message or "the call refused this connection")
        except (aiohttp.ClientError, OSError) as exc:
            log.error("the call host is unreachable at %s: %s", owner, exc)
            return error_response(503, "call_host_unavailable", "the call service is restarting; retry shortly",
                                  headers={"Retry-After": "2"})
        async with upstream:
            ws = web.WebSocketResponse(max_msg_size=_MAX, heartbeat=None)
            await ws.prepare(request)
            track(request.app, ws)
            legs = [asyncio.create_task(_pump(ws, upstream)), asyncio.create_task(_pump(upstream, ws))]
            try:
                await asyncio.wait(legs, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for leg in legs:
                    leg.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await leg
                # Pass the host's close code on (the page tells "replaced", "ended" … apart by it).
                code = upstream.close_code or aiohttp.WSCloseCode.GOING_AWAY
                if not ws.closed:
                    await ws.close(code=code)
                if not upstream.closed:
                    await upstream.close(code=ws.close_code or aiohttp.WSCloseCode.GOING_AWAY)
            return ws


async def _pump(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    async for msg in src:
        if msg.type == WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        else:
            break
