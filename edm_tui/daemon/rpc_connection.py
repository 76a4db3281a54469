"""One client connection of the RPC server: its outgoing queue and writer task.

Responses and event notifications leave in the order they were queued. Responses are
never dropped. Events sit in a bounded queue: when it is full the oldest event is
dropped, and the next event sent carries a seq number that much higher, so the client
sees the gap. A coalesced topic keeps only its newest pending event, which moves to
the back of the queue and takes no extra seq number.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable

from edm_tui.daemon.peers import Peer

log = logging.getLogger("edm_sync.rpc")

# A queued response: encoded bytes, or a function that encodes it when it is sent
# (the reply to `subscribe` reports the seq number current at that moment).
Response = bytes | Callable[[], bytes]

_YIELD_EVERY = 64  # lines written before the writer lets other tasks run
_MAX_LOGGED_WARNINGS = 10  # per connection; later ones are only counted


class Connection:
    """Queues and writes the outgoing lines of one client, and tracks its session state."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        peer: Peer,
        *,
        stall_timeout: float,
        event_queue_size: int,
        max_pending: int,
    ) -> None:
        self.peer = peer
        self.client_name = ""
        self.hello_done = False
        self.topics: set[str] = set()
        # Each line read takes a slot, freed when its response has been written, so a
        # client that sends requests but reads no replies stops being read.
        self.request_slots = asyncio.Semaphore(max_pending)
        self.reader_task: asyncio.Task[None] | None = None
        self.handler_tasks: set[asyncio.Task[None]] = set()

        self._writer = writer
        self._stall_timeout = stall_timeout
        self._event_queue_size = event_queue_size
        self._order = 0  # position of the next queued line, shared by responses and events
        self._responses: deque[tuple[int, Response]] = deque()
        self._events: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()  # (topic, data) as JSON
        self._coalesced: dict[bytes, int] = {}  # topic -> position of its pending event
        self._last_seq = 0
        self._dropped = 0  # events dropped since the last one sent
        self._dropped_unreported = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._warnings = 0
        self._writer_task = asyncio.create_task(self._write_loop(), name=f"rpc-writer-{peer.pid}")

    @property
    def current_seq(self) -> int:
        """Seq number of the last event sent; the next event carries a higher one."""
        return self._last_seq

    @property
    def closed(self) -> bool:
        """True once the writer task has ended, after which nothing more is sent."""
        return self._writer_task.done()

    def send_response(self, response: Response) -> None:
        """Queue a response; the writer frees one request slot after writing it."""
        if self.closed:
            self.request_slots.release()
            return
        self._responses.append((self._next_order(), response))
        self._wake.set()

    def send_event(self, topic: bytes, data: bytes, *, coalesce: bool) -> None:
        """Queue one event notification; `topic` and `data` are encoded JSON values."""
        if self.closed or self._closing:
            return
        if coalesce:
            replaced = self._coalesced.pop(topic, None)
            if replaced is not None:
                del self._events[replaced]
        if len(self._events) >= self._event_queue_size:
            self._drop_oldest_event()

        order = self._next_order()
        self._events[order] = (topic, data)
        if coalesce:
            self._coalesced[topic] = order
        self._wake.set()

    def close_after_flush(self) -> None:
        """Close the connection once every queued line has been written."""
        self._closing = True
        self._wake.set()

    def abort(self) -> None:
        """Drop the connection now, without writing what is still queued."""
        self._writer_task.cancel()
        self._writer.transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._writer_task, return_exceptions=True)

    def warn(self, message: str, *args: object) -> None:
        """Log a warning about this client, at most _MAX_LOGGED_WARNINGS times."""
        self._warnings += 1
        if self._warnings <= _MAX_LOGGED_WARNINGS:
            log.warning("client %s: " + message, self.peer.describe(), *args)
        if self._warnings == _MAX_LOGGED_WARNINGS:
            log.warning("client %s: further warnings about this client are only counted",
                        self.peer.describe())

    def log_suppressed_warnings(self) -> None:
        suppressed = self._warnings - _MAX_LOGGED_WARNINGS
        if suppressed > 0:
            log.warning("client %s: %d more warnings were not logged", self.peer.describe(), suppressed)

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    def _drop_oldest_event(self) -> None:
        order, (topic, _) = self._events.popitem(last=False)
        if self._coalesced.get(topic) == order:
            del self._coalesced[topic]
        self._dropped += 1
        self._dropped_unreported += 1

    def _next_line(self) -> bytes:
        """Take the line queued first, response or event."""
        response_order = self._responses[0][0] if self._responses else None
        event_order = next(iter(self._events)) if self._events else None
        if event_order is None or (response_order is not None and response_order < event_order):
            _, response = self._responses.popleft()
            self.request_slots.release()
            return response() if callable(response) else response

        _, (topic, data) = self._events.popitem(last=False)
        if self._coalesced.get(topic) == event_order:
            del self._coalesced[topic]
        seq = self._last_seq + self._dropped + 1
        self._last_seq = seq
        self._dropped = 0
        return b'{"jsonrpc":"2.0","method":"event","params":{"seq":%d,"topic":%s,"data":%s}}\n' % (
            seq, topic, data)

    async def _write_loop(self) -> None:
        transport = self._writer.transport
        written = 0
        try:
            while not transport.is_closing():
                if not self._responses and not self._events:
                    self._report_drops()
                    if self._closing:
                        # close() first writes out the transport's buffer, which never
                        # happens if the client reads nothing, so that wait is bounded too.
                        transport.close()
                        if transport.get_write_buffer_size():
                            asyncio.get_running_loop().call_later(self._stall_timeout, transport.abort)
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue

                self._writer.write(self._next_line())
                written += 1
                if transport.get_write_buffer_size() > 0:
                    # drain() blocks from the moment the buffer passes its high-water mark
                    # until the client has read it down below the low-water mark.
                    await asyncio.wait_for(self._writer.drain(), self._stall_timeout)
                elif written % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except TimeoutError:
            log.warning("client %s: its socket stayed full for %.1f s (stall timeout); disconnecting it",
                        self.peer.describe(), self._stall_timeout)
            transport.abort()
        except ConnectionError:
            transport.abort()
        finally:
            self._report_drops()
            # The reader may wait for a request slot that this task would have freed.
            if not self._closing and self.reader_task is not None:
                self.reader_task.cancel()

    def _report_drops(self) -> None:
        if self._dropped_unreported:
            self.warn("dropped %d events because the client read them too slowly "
                      "(event queue size %d)", self._dropped_unreported, self._event_queue_size)
            self._dropped_unreported = 0
