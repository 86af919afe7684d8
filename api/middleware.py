"""ASGI middleware: request body limit (413) and a request log without sequence contents."""

from __future__ import annotations

import json
import logging
import time

log = logging.getLogger("genoseq.api.access")


class BodyLimitMiddleware:
    """Answer 413 to a request whose body is over ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    without one (chunked) is counted as it arrives and refused once it passes the limit.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                await _send_json(send, 400, {"detail": "invalid Content-Length header"})
                return
            if too_large:
                await self._refuse(send)
                return
        received = 0
        started = refused = False

        async def counting_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not started:
                    # Answer now; the app sees the client go away and its own answer is dropped.
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send) -> None:
        await _send_json(send, 413, {"detail": f"request body is larger than the limit of {self.max_bytes} bytes"})


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class RequestLogMiddleware:
    """One log line per request: method, path, status, latency and how many sequences and bases
    it carried (set by the routes in ``request.state``); never the sequences."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            ms = (time.perf_counter() - started) * 1000
            extra = ""
            if "n_sequences" in state:
                extra = f" sequences={state['n_sequences']} bases={state['n_bases']}"
            log.info("%s %s %d %.1fms%s", scope["method"], scope["path"], status, ms, extra,
                     extra={"method": scope["method"], "path": scope["path"], "status": status,
                            "latency_ms": round(ms, 2), "sequences": state.get("n_sequences"),
                            "bases": state.get("n_bases")})
