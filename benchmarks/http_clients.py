"""Benchmark of how many calls per second HTTP clients get out of the IEM simulator.

Starts the simulator as a separate process with --latency-ms L and --max-concurrency C and
sends it `xmlapitest` calls from this process with each client below, one after another:

* raw: asyncio streams writing HTTP/1.1 by hand. It is a probe of the simulator's own
  ceiling, not a usable client (no chunked bodies, no errors, no TLS).
* client: httpx.AsyncClient with one pool of C connections, as a plain application would.
* transport: httpx.AsyncHTTPTransport called directly, as edm_tui.interspire.client does.
* client+2: httpx.AsyncClient with C + 2 connections, so that 2 calls wait on the server.

Prints calls per second, their share of C / L, and this process's CPU time per call.

Usage: .venv/bin/python benchmarks/http_clients.py [--calls N] [--latency-ms L] [--cap C]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx
from sync_memory import Simulator
from sync_scale import at_least, positive_milliseconds

from edm_tui.interspire.xmlapi import build_request

BODY = build_request("bench", "bench-token-0123456789", "authentication", "xmlapitest", {})
HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


async def run_workers(count: int, calls: int, one_call: Callable[[int], Awaitable[None]]) -> None:
    """Run `count` workers that together make `calls` calls, each passing its own index to `one_call`."""
    left = [calls]

    async def worker(index: int) -> None:
        while left[0] > 0:
            left[0] -= 1
            await one_call(index)

    await asyncio.gather(*(worker(i) for i in range(count)))


async def raw_client(url: str, connections: int, calls: int) -> None:
    parts = urlsplit(url)
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: text/xml\r\n"
               f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY
    streams = [await asyncio.open_connection(parts.hostname, parts.port) for _ in range(connections)]

    async def one_call(index: int) -> None:
        reader, writer = streams[index]
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)

    await run_workers(connections, calls, one_call)
    for _reader, writer in streams:
        writer.close()


async def httpx_client(url: str, connections: int, calls: int) -> None:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, headers=HEADERS) as client:

        async def one_call(_index: int) -> None:
            response = await client.post(url, content=BODY)
            response.raise_for_status()

        await run_workers(connections, calls, one_call)


async def httpx_transport(url: str, connections: int, calls: int) -> None:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncHTTPTransport(limits=limits) as transport:
        target = httpx.URL(url)

        async def one_call(_index: int) -> None:
            response = await transport.handle_async_request(
                httpx.Request("POST", target, headers=HEADERS, content=BODY))
            await response.aread()
            await response.aclose()
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")

        await run_workers(connections, calls, one_call)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=at_least(1), default=6000, help="calls per client (default 6000)")
    parser.add_argument("--latency-ms", type=positive_milliseconds, default=20.0,
                        help="simulator time per call, in ms (default 20)")
    parser.add_argument("--cap", type=at_least(1), default=16,
                        help="calls the simulator serves at once (default 16)")
    args = parser.parse_args()

    simulator = Simulator(args.latency_ms, args.cap)
    url = simulator.url
    ceiling = args.cap / (args.latency_ms / 1000)
    clients = [
        ("raw", raw_client, args.cap),
        ("client", httpx_client, args.cap),
        ("transport", httpx_transport, args.cap),
        ("client+2", httpx_client, args.cap + 2),
    ]
    print(f"# L = {args.latency_ms:g} ms, C = {args.cap}, C / L = {ceiling:.0f} calls/s, {args.calls} calls each")
    try:
        for name, client, connections in clients:
            started, cpu = time.monotonic(), time.process_time()
            asyncio.run(client(url, connections, args.calls))
            seconds = time.monotonic() - started
            cpu_ms = (time.process_time() - cpu) / args.calls * 1000
            rate = args.calls / seconds
            print(f"{name:10} {connections:3} connections {rate:6.0f} calls/s = {rate / ceiling:.3f} x C/L  "
                  f"CPU {cpu_ms:.3f} ms per call", flush=True)
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
