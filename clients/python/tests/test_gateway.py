"""Both clients against a live gateway: resume across kicks, reset, tickets, token expiry,
revoked rights, refusals, `Retry-After`, and binary data. Each test runs once per client kind
(`run_client` is parametrized over sync and async)."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from conftest import MEMBER_KEY, WAIT, Gateway, Run, config, eventually, jwt

from sse_gateway_client import (
    AccessRevokedError,
    ApiKey,
    Bearer,
    Credential,
    GatewayError,
    ResetInfo,
    TokenExpiredError,
)

RunClient = Callable[..., Run]


def token(seconds: float, subscribe: list[str] | None = None) -> Bearer:
    """A JWT valid for `seconds` more (rounded down to whole seconds, as `exp` is)."""
    claims = {"sub": "tester", "exp": int(time.time() + seconds), "subscribe": subscribe or ["secret.*"]}
    return Bearer(jwt(claims))


def wait_stream(gateway: Gateway, channel: str) -> None:
    eventually(lambda: bool(gateway.streams(channel)), f"a stream on {channel}")


def kick_when_open(gateway: Gateway, channel: str, kicked: set[str]) -> None:
    """Waits for a new stream on `channel` (one not kicked yet) and kicks it."""
    eventually(lambda: bool(set(gateway.streams(channel)) - kicked), f"a new stream on {channel}")
    (stream,) = set(gateway.streams(channel)) - kicked
    gateway.kick(stream)
    kicked.add(stream)


def test_resume_across_kicks_loses_no_event_and_repeats_none(gateway: Gateway, run_client: RunClient, tag: str) -> None:
    channel = f"kick.{tag}"
    run = run_client(gateway.url, [channel])
    wait_stream(gateway, channel)
    # A first event gives the client a resume point (a new stream carries no id before it).
    sent = [gateway.publish(channel, "first")]
    run.wait_events(1)
    kicked: set[str] = set()
    for n in range(4):
        kick_when_open(gateway, channel, kicked)
        # Published while the stream is closing and while the client waits to reconnect:
        # only the resume can bring these.
        sent += [gateway.publish(channel, f"{n}.{i}") for i in range(25)]
    eventually(lambda: len(gateway.streams(channel)) == 1, "the fifth stream")
    sent += [gateway.publish(channel, f"live.{i}") for i in range(5)]

    events = run.wait_events(len(sent))
    assert [e.id for e in events] == sent, "every event once, in order"
    assert run.data()[-1] == "live.4"
    assert run.client.connections == 5
    assert run.client.last_reset is None
    assert run.client.last_event_id == sent[-1]
    assert run.client.state == "open"


@pytest.mark.parametrize(("resume_from", "reason"), [("1-1", "unknown_id"), ("not-an-id", "malformed_id")])
def test_a_resume_point_the_gateway_does_not_know_yields_a_reset_then_live_events(
    gateway: Gateway, run_client: RunClient, resume_from: str, reason: str, tag: str
) -> None:
    channel = f"reset.{tag}"
    run = run_client(gateway.url, [channel], last_event_id=resume_from)
    first = run.wait_events(1)[0]
    assert (first.type, first.json()) == ("reset", {"reason": reason})
    assert run.client.last_reset == ResetInfo(reason=reason, id=first.id)
    live = gateway.publish(channel, "after the reset")
    assert [(e.id, e.data) for e in run.wait_events(2)[1:]] == [(live, "after the reset")]


def test_binary_data_of_all_256_byte_values_round_trips(gateway: Gateway, run_client: RunClient, tag: str) -> None:
    channel = f"binary.{tag}"
    run = run_client(gateway.url, [channel])
    wait_stream(gateway, channel)
    payload = bytes(range(256))
    gateway.publish(channel, event="blob", data_base64=base64.b64encode(payload).decode())
    (event,) = run.wait_events(1)
    assert event.type == "blob"
    assert event.bytes() == payload


def test_the_ticket_flow_fetches_a_fresh_ticket_for_every_connection(
    gateway: Gateway, run_client: RunClient, tag: str
) -> None:
    channel = f"members.{tag}"
    run = run_client(gateway.url, [channel], credential=ApiKey(MEMBER_KEY), tickets=True)
    wait_stream(gateway, channel)
    first = gateway.publish(channel, "first")
    run.wait_events(1)
    kicked: set[str] = set()
    kick_when_open(gateway, channel, kicked)
    missed = gateway.publish(channel, "while reconnecting")
    eventually(lambda: len(gateway.streams(channel)) == 1, "the second stream")
    live = gateway.publish(channel, "live")

    assert [e.id for e in run.wait_events(3)] == [first, missed, live]
    methods = [(method, path.split("?")[0]) for method, path, _ in run.requests]
    assert methods == [("POST", "/tickets"), ("GET", "/events")] * 2
    tickets = [path.split("ticket=")[1] for method, path, _ in run.requests if method == "GET"]
    assert len(set(tickets)) == 2, "each connection spends a ticket of its own"
    assert [has_credential for method, _, has_credential in run.requests] == [True, False] * 2, (
        "the credential goes to /tickets only"
    )


def test_token_expiry_asks_for_a_new_token_and_resumes(gateway: Gateway, run_client: RunClient, tag: str) -> None:
    # Two clients at once, one sending its token in a header, one trading it for tickets:
    # both tokens expire together, so the test waits for one expiry only.
    expiring = token(3)
    runs: dict[str, Run] = {}
    asked: dict[str, list[float]] = {}
    for tickets in (False, True):
        channel = f"secret.{tag}.tickets_{tickets}"
        asked[channel] = []

        def new_token(channel: str = channel) -> Credential:
            asked[channel].append(time.monotonic())
            # Published between the end of the old stream and the new one: the resume brings it.
            gateway.publish(channel, "while refreshing")
            return token(600)

        runs[channel] = run_client(
            gateway.url, [channel], credential=expiring, tickets=tickets, on_token_expired=new_token
        )
    for channel in runs:
        wait_stream(gateway, channel)
        gateway.publish(channel, "before expiry")
    for channel, run in runs.items():
        client = run.client
        eventually(lambda: client.connections == 2 and client.state == "open", "a new stream")  # noqa: B023
        gateway.publish(channel, "after")

    for channel, run in runs.items():
        assert [e.data for e in run.wait_events(3)] == ["before expiry", "while refreshing", "after"], channel
        assert len(asked[channel]) == 1, channel
        assert run.client.connections == 2, channel
        assert all(e.type == "message" for e in run.events), "token_expired is handled, not yielded"


def test_token_expiry_without_a_new_token_stops_with_token_expired(
    gateway: Gateway, run_client: RunClient, tag: str
) -> None:
    expiring = token(3)
    hooks: dict[str, Callable[[], Credential | None] | None] = {
        "no_hook": None,
        "hook_returns_none": lambda: None,
        "hook_returns_the_same_token": lambda: expiring,
    }
    runs = {
        f"secret.{tag}.{name}": run_client(
            gateway.url, [f"secret.{tag}.{name}"], credential=expiring, on_token_expired=hook
        )
        for name, hook in hooks.items()
    }
    for channel in runs:
        wait_stream(gateway, channel)
        gateway.publish(channel, "before expiry")

    for channel, run in runs.items():
        error = run.wait_end()
        assert isinstance(error, TokenExpiredError), f"{channel}: {error!r}"
        assert (error.status, error.code) == (401, "token_expired")
        assert run.data() == ["before expiry"], channel
        assert run.client.connections == 1, f"{channel} never reconnects with the expired token"
        assert run.client.state == "closed"
        assert run.client.error is error


def test_a_token_refused_at_reconnect_is_replaced_through_the_hook(
    gateway: Gateway, run_client: RunClient, tag: str
) -> None:
    channel = f"secret.{tag}"
    expired = token(-120)  # past exp and the gateway's 30 s leeway: 401 at once
    run = run_client(gateway.url, [channel], credential=expired, on_token_expired=lambda: token(600))
    wait_stream(gateway, channel)
    gateway.publish(channel, "hello")
    assert run.wait_events(1)[0].data == "hello"
    assert run.client.connections == 2


@pytest.mark.parametrize(
    ("channel", "credential", "status", "code"),
    [
        ("members.x", ApiKey("no-such-key"), 401, "unauthorized"),
        ("members.x", None, 401, "unauthorized"),
        ("secret.x", token(600, subscribe=["other"]), 403, "forbidden"),
        ("bad channel!", None, 400, "invalid_channel"),
    ],
)
def test_a_refusal_that_will_not_change_stops_with_the_gateway_error(
    gateway: Gateway, run_client: RunClient, channel: str, credential: Credential | None, status: int, code: str
) -> None:
    run = run_client(gateway.url, [channel], credential=credential)
    error = run.wait_end()
    assert isinstance(error, GatewayError), repr(error)
    assert (error.status, error.code, error.endpoint) == (status, code, "/events")
    assert run.client.connections == 1, "not retried"


def test_a_ticket_refused_stops_with_the_error_of_tickets(gateway: Gateway, run_client: RunClient) -> None:
    run = run_client(gateway.url, ["members.x"], credential=ApiKey("no-such-key"), tickets=True)
    error = run.wait_end()
    assert isinstance(error, GatewayError), repr(error)
    assert (error.status, error.code, error.endpoint) == (401, "unauthorized", "/tickets")
    assert run.client.connections == 0


def test_a_503_is_waited_out_for_its_retry_after(
    start_gateway: Callable[[str], Gateway], run_client: RunClient
) -> None:
    gateway = start_gateway(config("limits:\n  max_connections: 1\n"))
    with httpx.Client(timeout=WAIT) as other, other.stream("GET", f"{gateway.url}/events?channel=full") as taken:
        assert taken.status_code == 200
        started = time.monotonic()
        run = run_client(gateway.url, ["wait"])
        eventually(lambda: run.client.error is not None, "the refusal")
        error = run.client.error
        assert isinstance(error, GatewayError)
        assert (error.status, error.code, error.retry_after) == (503, "at_capacity", 5)
        assert run.client.state == "reconnecting"
    eventually(lambda: not gateway.streams("full"), "the other stream to leave")
    eventually(lambda: run.client.state == "open", "the stream", within=WAIT)
    waited = time.monotonic() - started
    assert 5.0 <= waited < 5.0 * 3, f"opened after {waited:.2f}s, Retry-After was 5 s"
    assert run.client.connections == 2, "no attempt before Retry-After"
    gateway.publish("wait", "in")
    assert run.wait_events(1)[0].data == "in"


def test_revoked_rights_stop_the_client_with_access_revoked(
    start_gateway: Callable[[str], Gateway], run_client: RunClient
) -> None:
    gateway = start_gateway(config())
    run = run_client(gateway.url, ["members.x"], credential=ApiKey(MEMBER_KEY))
    wait_stream(gateway, "members.x")
    gateway.publish("members.x", "before")
    run.wait_events(1)
    gateway.reload(config(member=False))

    error = run.wait_end()
    assert isinstance(error, AccessRevokedError), repr(error)
    assert (error.status, error.code) == (403, "access_revoked")
    assert run.data() == ["before"]
    assert run.client.connections == 1


def test_max_attempts_gives_up_with_the_last_error(run_client: RunClient) -> None:
    # A port nothing listens on (bound, then let go): connection refused, three times.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    run = run_client(f"http://127.0.0.1:{port}", ["x"], max_attempts=3)
    error = run.wait_end()
    assert isinstance(error, GatewayError), repr(error)
    assert (error.status, error.code) == (0, "network_error")
    assert run.client.connections == 3


def test_heartbeat_events_are_not_yielded(start_gateway: Callable[[str], Gateway], run_client: RunClient) -> None:
    gateway = start_gateway(config(sse="  heartbeat: event\n"))
    run = run_client(gateway.url, ["beat"])
    wait_stream(gateway, "beat")
    first = gateway.publish("beat", "a")
    with httpx.Client(timeout=WAIT) as raw, raw.stream("GET", f"{gateway.url}/events?channel=beat") as watch:
        # Seen on the wire by a plain reader: the gateway does send them (500 ms apart).
        seen = b""
        for chunk in watch.iter_bytes():
            seen += chunk
            if seen.count(b"event: heartbeat") >= 2:
                break
    last = gateway.publish("beat", "b")
    assert [(e.id, e.data) for e in run.wait_events(2)] == [(first, "a"), (last, "b")]
    assert run.client.last_event_id == last
