"""The middleware around the whole app: the request body's size limit, and a JSON answer for
any exception that escapes the app."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance import api
from appliance.errors import InternalError, TooLargeError, VmkeepError

log = logging.getLogger("appliance.server")

# The largest request body the appliance reads: its requests are names, paths, settings, a
# job's scripts and key texts; a catalog query's SQL is capped at 64 KiB on its own.
MAX_BODY = 1 << 20


class _BodyTooLarge(Exception):
    """The request body streamed past ``MAX_BODY`` (raised out of ``receive``)."""


async def _send_error(send: Send, status: int, error: VmkeepError, *,
                      close: bool = False) -> None:
    body = api.ErrorBody.of(error).model_dump_json(exclude_none=True).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the request body is never read: the connection cannot go on
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _too_large(size: int | None, limit: int) -> TooLargeError:
    what = f"{size} bytes" if size is not None else f"larger than {limit} bytes"
    return TooLargeError(f"the request body is {what}; the appliance takes at most {limit} "
                         "bytes per request: send less (see docs/API.md)")


class Guard:
    """Pure ASGI middleware around the whole app: a request body larger than ``limit`` is
    answered 413 without being read (by its Content-Length, or once a chunked body streams
    past the limit), and any exception that escapes the app becomes a JSON ``ErrorBody``
    500 (code ``internal``), logged with its traceback: never a plain-text 500."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                size: int | None = int(length)
            except ValueError:
                size = None
            if size is not None and size > self.limit:
                await _send_error(send, 413, _too_large(size, self.limit), close=True)
                return
        received = 0
        started = False  # a response began: nothing more can be said
        refused = False  # we answered 413: what the app still sends is dropped

        async def limited_receive() -> Message:
            nonlocal received, started, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answered here and now: the app turns errors while reading a body into
                    # its own 400, which is then dropped.
                    if not started:
                        started = refused = True
                        await _send_error(send, 413, _too_large(None, self.limit), close=True)
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            pass  # answered 413 in limited_receive
        except Exception as exc:
            if started:
                raise  # mid-answer: the server logs it and drops the connection
            log.error("unexpected error answering %s %s", scope.get("method"),
                      scope.get("path"), exc_info=exc)
            await _send_error(send, 500, InternalError(
                f"the appliance met an unexpected error ({type(exc).__name__}); this is a bug: "
                "please report it with the appliance's log"))
