"""uvicorn's HTTP protocol with a deadline for the request headers.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but waits for the headers
of a request for ever: a client that connects and sends them slowly (or not at all) holds a
connection open. Here a connection whose request headers are not complete within
:data:`HEADER_TIMEOUT` seconds (after it opened, or after its previous response) gets a 408
and is closed, with one log line.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

logger = logging.getLogger("envkit.serving")

# Set by the server (and in each worker process) from --body-timeout.
HEADER_TIMEOUT = 30.0

_TIMEOUT_BODY = (
    b'{"error_code": "BAD_REQUEST", "message": "the request headers did not arrive in time"}'
)
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    + b"content-length: %d\r\n\r\n" % len(_TIMEOUT_BODY)
    + _TIMEOUT_BODY
)

_Base: Any = AutoHTTPProtocol  # h11, or httptools when it is installed


class HeaderTimeoutProtocol(_Base):
    """The HTTP protocol uvicorn would choose, with a request-header deadline."""

    _envkit_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._envkit_arm(None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._envkit_arm(self.cycle)  # the next request's headers get the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if self._envkit_timer is not None:
            self._envkit_timer.cancel()
        super().connection_lost(exc)

    def _envkit_arm(self, cycle: Any) -> None:
        if self._envkit_timer is not None:
            self._envkit_timer.cancel()
        self._envkit_timer = self.loop.call_later(HEADER_TIMEOUT, self._envkit_expire, cycle)

    def _envkit_expire(self, cycle: Any) -> None:
        """No new request since the timer was armed: refuse the connection (408)."""
        if self.cycle is not cycle or self.transport.is_closing():
            return
        client = "{}:{}".format(*self.client) if self.client else "a client"
        logger.warning(
            "%s sent no complete request headers within %gs: 408, connection closed",
            client,
            HEADER_TIMEOUT,
        )
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()
