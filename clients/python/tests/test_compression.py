"""Compressed streams decoded by decoders the gateway does not share code with: Google's brotli
library (the `brotli` package) and zlib (Python's `zlib`). The gateway writes each br chunk as
meta-blocks of its own, spliced into one stream; this checks that a standard streaming decoder
gives back each event as soon as its chunk arrives, that the decoded bytes are the plain
stream's, and that the stream ends cleanly."""

from __future__ import annotations

import base64
import json
import queue
import random
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import brotli
import httpx
import pytest
from conftest import WAIT, Gateway, config, eventually


class Decoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def finished(self) -> bool: ...


class Brotli:
    def __init__(self) -> None:
        self.decoder = brotli.Decompressor()

    def feed(self, data: bytes) -> bytes:
        return bytes(self.decoder.process(data))

    def finished(self) -> bool:
        return bool(self.decoder.is_finished())


class Gzip:
    def __init__(self) -> None:
        self.decoder = zlib.decompressobj(wbits=31)

    def feed(self, data: bytes) -> bytes:
        return self.decoder.decompress(data)

    def finished(self) -> bool:
        return self.decoder.eof and not self.decoder.unused_data


DECODERS: dict[str, Callable[[], Decoder]] = {"br": Brotli, "gzip": Gzip}


class Wire:
    """A stream's body as it arrives (the transfer coding undone, the content coding not), read
    by a thread of its own into a queue."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, args=(response,), daemon=True).start()

    def _read(self, response: httpx.Response) -> None:
        try:
            for chunk in response.iter_raw():
                self.chunks.put(chunk)
        except httpx.HTTPError:
            pass  # closed by the test: it has what it waits for
        finally:
            self.chunks.put(None)


@contextmanager
def stream(gateway: Gateway, channel: str, encoding: str | None) -> Iterator[tuple[httpx.Response, Wire]]:
    headers = {"Accept-Encoding": encoding or "identity"}
    with httpx.Client(timeout=WAIT) as http, http.stream(
        "GET", f"{gateway.url}/events", params={"channel": channel}, headers=headers
    ) as response:
        assert response.status_code == 200
        yield response, Wire(response)


def notification(n: int) -> str:
    level = ["info", "success", "warning", "error"][n % 4]
    return json.dumps(
        {
            "id": f"1764974000000-{n}",
            "title": f"Periodic notification #{n}",
            "body": "Generated every 5s",
            "level": level,
            "time": f"2026-12-06T00:{n // 60 % 60:02}:{n % 60:02}.{n * 37 % 1000:03}Z",
        }
    )


def metrics(n: int) -> str:
    return json.dumps(
        {
            "time": f"2026-12-06T00:{n // 60 % 60:02}:{n % 60:02}.{n * 37 % 1000:03}Z",
            "cpu_percent": n * 7919 % 10000 / 100,
            "memory": {"total_bytes": 8340000768, "available_bytes": 5123456789 - n * 4096, "used_percent": 38.57},
            "load": [0.42, 0.37, 0.31],
            "network": {"rx_bytes": 987654321 + n * 1834, "tx_bytes": 123456789 + n * 2211},
            "stream_clients": 3,
        }
    )


@pytest.mark.parametrize("encoding", ["br", "gzip"])
def test_a_standard_decoder_gives_each_event_as_it_arrives_and_the_plain_streams_bytes(
    start_gateway: Callable[[str], Gateway], encoding: str
) -> None:
    # No heartbeats: the plain and the compressed stream then carry the same bytes.
    yaml = config(sse="  compression: true\n", extra="limits:\n  max_event_bytes: 1000000\n")
    gateway = start_gateway(yaml.replace("heartbeat_interval: 500ms", "heartbeat_interval: 1h"))
    channel = "compressed"
    with stream(gateway, channel, None) as (_, plain), stream(gateway, channel, encoding) as (response, wire):
        assert response.headers["content-encoding"] == encoding
        eventually(lambda: len(gateway.streams(channel)) == 2, "both streams open")
        decoder = DECODERS[encoding]()
        decoded = b""
        received = 0
        # Shapes of the reference upstream (changing from event to event); an event larger than
        # brotli's window (64 KiB) that repeats a part of itself from further back than that
        # (which must not be referred to); every byte value (as base64).
        noise = random.Random(7)
        part = base64.b64encode(noise.randbytes(15_000)).decode()
        far = part + base64.b64encode(noise.randbytes(50_000)).decode() + part
        payloads: list[tuple[str | None, str | None]] = [(notification(n), None) for n in range(30)]
        payloads += [(metrics(n), None) for n in range(30)]
        payloads += [(far, None), (None, base64.b64encode(bytes(range(256))).decode())]
        payloads += [(notification(n), None) for n in range(30, 40)]
        for data, data_base64 in payloads:
            event_id = gateway.publish(channel, data, data_base64=data_base64)
            want = f"id: {event_id}\n".encode()

            def arrived() -> bool:
                nonlocal decoded, received
                try:
                    chunk = wire.chunks.get(timeout=0.05)
                except queue.Empty:
                    return False
                assert chunk is not None, "the stream ended early"
                received += len(chunk)
                decoded += decoder.feed(chunk)
                return want in decoded and decoded.endswith(b"\n\n")

            # The event is decoded from what has arrived before the next one is published.
            eventually(arrived, f"event {event_id} decoded")
        for stream_id in gateway.streams(channel):
            gateway.kick(stream_id)
        while (chunk := wire.chunks.get(timeout=WAIT)) is not None:
            received += len(chunk)
            decoded += decoder.feed(chunk)
        assert decoder.finished(), "the compressed stream ends cleanly"
        whole = b""
        while (chunk := plain.chunks.get(timeout=WAIT)) is not None:
            whole += chunk
        assert decoded == whole
        assert received < len(whole) * 0.9
