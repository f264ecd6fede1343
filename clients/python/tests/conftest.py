"""Test kit: a real `sse-gateway` process on a free port, JWTs signed with its secret, and each
client kind (sync, async) iterating in a background thread while the test drives the gateway.

The gateway binary is `$SSE_GATEWAY_BIN` when set, else what `cargo build --bin sse-gateway`
builds (cargo is quick when it is up to date; `scripts/test` has built it already).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import pytest

from sse_gateway_client import AsyncSseClient, Backoff, Credential, Event, SseClient

REPO = Path(__file__).resolve().parents[3]
ADMIN_KEY = "test-admin-key-0123456789"
MEMBER_KEY = "test-member-key-9876543210"
JWT_SECRET = "test-jwt-secret-0123456789-abcdefghijklmnop"
WAIT = 15.0
"""Deadline of every wait on the gateway: generous, for a busy two-core machine."""
FAST = Backoff(initial=0.05, maximum=0.5)
"""Reconnect delays for tests: the gateway's `retry:` (200 ms below) is the floor."""

Kind = Literal["sync", "async"]
KINDS: list[Kind] = ["sync", "async"]

CONFIG = """\
listen: 127.0.0.1:0
static_dir: null
sse:
  retry: 200ms
  heartbeat_interval: 500ms
{sse}channels:
  - name: "secret.*"
    subscribe: claims
  - name: "members.*"
    subscribe: authenticated
  - name: "*"
    subscribe: public
auth:
  jwt:
    secret_env: TEST_JWT_SECRET
  api_keys:
    - name: admin
      key_env: TEST_ADMIN_KEY
      publish: ["*"]
      admin: true
{member}shutdown:
  grace_period: 1s
{extra}"""
"""The test gateway's config: 200 ms `retry:` and 500 ms heartbeats keep the suite quick."""

MEMBER = """\
    - name: member
      key_env: TEST_MEMBER_KEY
"""


def config(extra: str = "", member: bool = True, sse: str = "") -> str:
    """The test config with `extra` top-level keys and `sse` keys (two-space indented);
    `member=False` drops the member key."""
    return CONFIG.format(member=MEMBER if member else "", extra=extra, sse=sse)


def eventually(check: Callable[[], bool], what: str, within: float = WAIT) -> None:
    """Waits until `check()` is true, polling, at most `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.02)


def jwt(claims: dict[str, Any]) -> str:
    """An HS256 JWT of `claims`, signed with the test gateway's secret."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


@pytest.fixture
def tag(request: pytest.FixtureRequest) -> str:
    """The test's name and parameters as channel-name characters: channels of its own on a
    shared gateway."""
    return re.sub(r"[^A-Za-z0-9._:/-]", "_", request.node.name)


@pytest.fixture(scope="session")
def gateway_bin() -> Path:
    if os.environ.get("SSE_GATEWAY_BIN"):
        return Path(os.environ["SSE_GATEWAY_BIN"])
    out = subprocess.run(
        ["cargo", "build", "--bin", "sse-gateway", "--message-format=json-render-diagnostics"],
        cwd=REPO,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    for line in out.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            if message["target"]["name"] == "sse-gateway":
                return Path(message["executable"])
    raise RuntimeError("cargo built no sse-gateway executable")


class Gateway:
    """A gateway process on `127.0.0.1:0`, with its config in a temporary directory."""

    def __init__(self, binary: Path, yaml: str) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="sse-gateway-pytest-")
        self.config = Path(self.dir.name) / "gateway.yaml"
        self.config.write_text(yaml)
        self.log = Path(self.dir.name) / "stderr.log"
        env = dict(os.environ, TEST_ADMIN_KEY=ADMIN_KEY, TEST_MEMBER_KEY=MEMBER_KEY, TEST_JWT_SECRET=JWT_SECRET)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(binary), "--config", str(self.config)],
                cwd=self.dir.name,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.url = self._read_address()
        self.http = httpx.Client(base_url=self.url, headers={"X-API-Key": ADMIN_KEY}, timeout=WAIT)

    def _read_address(self) -> str:
        """The URL in the `sse-gateway listening on http://ADDR` line it prints once bound."""
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None

        def forward() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=forward, daemon=True).start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith("sse-gateway listening on "):
                return line.removeprefix("sse-gateway listening on ").strip()
        self.stop()
        raise RuntimeError(f"the gateway did not start:\n{self.log.read_text()}")

    def publish(
        self, channel: str, data: str | None = None, *, event: str = "message", data_base64: str | None = None
    ) -> str:
        """Publishes with the admin key; returns the event's id."""
        body: dict[str, Any] = {"channel": channel, "event": event}
        body.update({"data": data} if data_base64 is None else {"data_base64": data_base64})
        reply = self.http.post("/broadcast", json=body)
        assert reply.status_code == 202, reply.text
        return str(reply.json()["id"])

    def streams(self, channel: str) -> list[str]:
        """Ids of the open streams subscribed to `channel`."""
        clients = self.http.get("/clients", params={"limit": 1000}).json()["clients"]
        return [c["id"] for c in clients if channel in c["channels"]]

    def kick(self, stream_id: str) -> None:
        assert self.http.delete(f"/clients/{stream_id}").status_code == 204

    def reload(self, yaml: str) -> None:
        """Writes a new config and tells the gateway (SIGHUP re-reads it at once)."""
        self.config.write_text(yaml)
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def gateway(gateway_bin: Path) -> Iterator[Gateway]:
    """A gateway on the test config, shared by a module's tests (each uses its own channels)."""
    gw = Gateway(gateway_bin, config())
    yield gw
    gw.stop()


@pytest.fixture
def start_gateway(gateway_bin: Path) -> Iterator[Callable[[str], Gateway]]:
    """Starts gateways on configs of the test's own; stops them after the test."""
    started: list[Gateway] = []

    def start(yaml: str) -> Gateway:
        started.append(Gateway(gateway_bin, yaml))
        return started[-1]

    yield start
    for gw in started:
        gw.stop()


TokenHook = Callable[[], "Credential | None"]


class Run:
    """A client of either kind iterating in a background thread: the events it yielded, and
    the exception that ended the iteration. `requests` logs `METHOD path?query` of every HTTP
    request the client sent, with the credential headers it carried."""

    def __init__(
        self, kind: Kind, base_url: str, channels: list[str], on_token_expired: TokenHook | None, **options: Any
    ) -> None:
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self.requests: list[tuple[str, str, bool]] = []
        self._stop = threading.Event()
        self._done = threading.Event()
        self.client: SseClient | AsyncSseClient
        if kind == "sync":
            self.client = SseClient(
                base_url,
                channels,
                on_token_expired=on_token_expired,
                http_client=httpx.Client(event_hooks={"request": [self._log]}),
                **options,
            )
            target: Callable[[], None] = self._iterate_sync
        else:
            hook = _as_coroutine(on_token_expired) if on_token_expired else None

            async def log(request: httpx.Request) -> None:
                self._log(request)

            self.client = AsyncSseClient(
                base_url,
                channels,
                on_token_expired=hook,
                http_client=httpx.AsyncClient(event_hooks={"request": [log]}),
                **options,
            )
            target = self._iterate_async
        threading.Thread(target=target, daemon=True).start()

    def _log(self, request: httpx.Request) -> None:
        credential = "authorization" in request.headers or "x-api-key" in request.headers
        self.requests.append((request.method, f"{request.url.path}?{request.url.query.decode()}", credential))

    def _iterate_sync(self) -> None:
        assert isinstance(self.client, SseClient)
        try:
            for event in self.client:
                self.events.append(event)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e
        finally:
            self._done.set()

    def _iterate_async(self) -> None:
        client = self.client
        assert isinstance(client, AsyncSseClient)

        async def consume(scope: anyio.CancelScope) -> None:
            async for event in client:
                self.events.append(event)
            scope.cancel()

        async def main() -> None:
            try:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(consume, tasks.cancel_scope)
                    while not self._stop.is_set():
                        await anyio.sleep(0.02)
                    tasks.cancel_scope.cancel()
            finally:
                await client.aclose()

        try:
            anyio.run(main)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e.exceptions[0] if isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1 else e
        finally:
            self._done.set()

    def data(self) -> list[str]:
        return [event.data for event in self.events]

    def wait_events(self, n: int) -> list[Event]:
        eventually(lambda: len(self.events) >= n or self._done.is_set(), f"{n} events")
        assert self.error is None, f"the client stopped: {self.error!r}"
        return self.events

    def wait_end(self) -> BaseException | None:
        """Waits for the iteration to end by itself; returns what it raised."""
        eventually(self._done.is_set, "the client to stop")
        return self.error

    def stop(self) -> None:
        self._stop.set()
        if isinstance(self.client, SseClient):
            self.client.close()
        self._done.wait(WAIT)


def _as_coroutine(hook: TokenHook) -> Callable[[], Any]:
    """`hook` as a coroutine function, so the async client's awaiting path is the one tested."""

    async def wrapped() -> Credential | None:
        return hook()

    return wrapped


@pytest.fixture(params=KINDS)
def run_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., Run]]:
    """Starts clients of the test's kind (the test runs once per kind); stops them after it."""
    kind: Kind = request.param
    runs: list[Run] = []

    def start(base_url: str, channels: list[str], on_token_expired: TokenHook | None = None, **options: Any) -> Run:
        options.setdefault("backoff", FAST)
        runs.append(Run(kind, base_url, channels, on_token_expired, **options))
        return runs[-1]

    yield start
    for run in runs:
        run.stop()
