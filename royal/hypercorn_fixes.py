"""Two fixes to Hypercorn (0.18) that ``royal serve`` applies in each worker, with the send
path shortcuts (royal/hypercorn_shortcuts.py) and lighter per-connection parts
(royal/hypercorn_light.py).

When a client closes an idle keep-alive connection, Hypercorn's asyncio server stops reading
but leaves the connection's idle timer running: the socket and three tasks stay until
``keep_alive_timeout`` (75 s here) runs out. Clients that reconnect often (EventSource after
every drain or network change, load balancers' health checks) then pile up thousands of dead
connections. Once the peer has closed, no request can arrive, so the timer is stopped and the
connection ends at once. (tests/reliability/test_reconnects.py)

When the kernel gives up on a peer (``TCP_USER_TIMEOUT``, set by royal.server so that vanished
clients are found), closing the connection raises ``TimeoutError`` (ETIMEDOUT), which Hypercorn
does not expect: every such connection printed a traceback. The peer is gone either way.
(tests/reliability/test_disconnects.py)
"""

from __future__ import annotations

from typing import Any

from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.ws_stream import WSStream

from royal import hypercorn_light, hypercorn_shortcuts

_read_data = TCPServer._read_data
_close = TCPServer._close


async def _read_until_closed_then_stop_the_idle_timer(self: Any) -> None:
    await _read_data(self)
    await self.idle_task.stop()


async def _close_even_if_the_peer_timed_out(self: Any) -> None:
    try:
        await _close(self)
    except OSError:  # TimeoutError and kin: nothing is left to close
        pass


def apply() -> None:
    """Patch Hypercorn's TCPServer, H11Protocol, HTTPStream, WSStream, TaskGroup and
    WorkerContext (idempotent)."""
    TCPServer._read_data = _read_until_closed_then_stop_the_idle_timer  # type: ignore[method-assign]
    TCPServer._close = _close_even_if_the_peer_timed_out  # type: ignore[method-assign]
    H11Protocol.stream_send = hypercorn_shortcuts.send_body_chunks_directly  # type: ignore[method-assign]
    HTTPStream.app_send = hypercorn_shortcuts.write_body_chunks_to_a_free_socket  # type: ignore[method-assign]
    WSStream.app_send = hypercorn_shortcuts.send_text_frames_directly  # type: ignore[method-assign]
    TaskGroup.spawn_app = hypercorn_light.spawn_app_with_a_light_queue  # type: ignore[method-assign]
    WorkerContext.event_class = hypercorn_light.LightEventWrapper
