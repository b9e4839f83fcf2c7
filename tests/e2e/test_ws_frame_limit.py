"""The ASGI server's own message limit, against each server config.serve can start, started the way production
starts it: a frame over WEBSOCKET_MAX_MESSAGE_BYTES gets close 1009 and the consumer never sees it (uvicorn and
daphne refuse it from its header, before its payload is read; granian reads it first, then config.serve's
MessageLimit closes the socket); a frame under the limit still reaches the consumer, whose own MAX_MESSAGE_BYTES
check stays as the second line."""
from __future__ import annotations

import json
import os
import struct

import pytest
from django.conf import settings
from django.db import connection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from participants.services import participant_consent, participant_join

from ..factories import make_study
from .stack import Stack, database_url

pytestmark = [pytest.mark.django_db(transaction=True)]


def client_frame_header(length: int) -> tuple[bytes, bytes]:
    """A masked text frame's header announcing ``length`` payload bytes (RFC 6455 5.2), and its mask."""
    mask = os.urandom(4)
    if length < 126:
        return struct.pack("!BB", 0x81, 0x80 | length) + mask, mask
    if length < 2 ** 16:
        return struct.pack("!BBH", 0x81, 0x80 | 126, length) + mask, mask
    return struct.pack("!BBQ", 0x81, 0x80 | 127, length) + mask, mask


def masked(data: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


# The production default in the everyday tier; the alternatives with the full suite (slow: a server each).
@pytest.mark.parametrize("server", ["uvicorn", pytest.param("granian", marks=pytest.mark.slow),
                                    pytest.param("daphne", marks=pytest.mark.slow)])
def test_the_server_closes_an_oversized_message_with_1009_before_the_consumer_reads_it(tmp_path, server):
    limit = settings.WEBSOCKET_MAX_MESSAGE_BYTES
    assert limit == 64 * 1024  # the default the consumer's MAX_MESSAGE_BYTES matches
    study = make_study(slug="frames", min_group_size=3, max_group_size=3)
    participant = participant_consent(participant=participant_join(study=study, params={"PROLIFIC_PID": "f-1"}))
    stack = Stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path, worker=False, server=server)
    with stack:
        url = f"ws://127.0.0.1:{stack.port}/ws/p/{participant.token}/"
        origin = f"http://127.0.0.1:{stack.port}"

        # Under the limit: read, and answered by the consumer (here: text longer than any field allows).
        with connect(url, origin=origin, max_size=2 ** 22) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            ws.send(json.dumps({"type": "draft", "phase": "opinion", "text": "a" * (limit - 200), "ref": "big"}))
            reply = json.loads(ws.recv(timeout=10))
            assert reply["type"] == "error" and reply["ref"] == "big" and reply["code"] == "invalid"

        # Over the limit: uvicorn and daphne must close with 1009 at once from the header, so only the header and
        # 1 KiB of the payload are sent; granian gets the whole frame. Either way without a reply from the
        # consumer (which would answer "too_large" and keep the socket open).
        with connect(url, origin=origin, max_size=2 ** 22) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            header, mask = client_frame_header(4 * limit)
            payload = b'{"type": "draft", "text": "' + b"x" * (1000 if server != "granian" else 4 * limit - 27)
            ws.socket.sendall(header + masked(payload, mask))
            with pytest.raises(ConnectionClosed) as closed:
                got = ws.recv(timeout=10)
                pytest.fail(f"the consumer answered an oversized frame: {got[:200]}")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

        # The server is fine afterwards: a new socket works.
        with connect(url, origin=origin) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            ws.send(json.dumps({"type": "ping", "version": "stale", "ref": "p"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
    log = (tmp_path / "asgi.log").read_text()
    assert "Traceback" not in log and "too_large" not in log


@pytest.mark.parametrize("server", [
    "uvicorn", pytest.param("daphne", marks=pytest.mark.slow),
    pytest.param("granian", marks=[pytest.mark.slow, pytest.mark.xfail(strict=True, reason=(
        "granian 2.8.7 does not carry out a websocket.close sent from a channel-layer handler: the error reply "
        "arrives, the close frame never does (why granian is not config.serve's default)"))]),
])
def test_a_close_sent_by_the_application_reaches_the_client(tmp_path, server):
    """The socket cap as a client sees it: a second socket of the same participant makes the consumer send the
    first one an error reply and close it with 4409 from a channel-layer handler."""
    study = make_study(slug="closes", min_group_size=3, max_group_size=3)
    participant = participant_consent(participant=participant_join(study=study, params={"PROLIFIC_PID": "c-1"}))
    with Stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path, worker=False, server=server,
               env={"WEBSOCKET_MAX_SOCKETS_PER_PARTICIPANT": "1"}) as stack:
        url = f"ws://127.0.0.1:{stack.port}/ws/p/{participant.token}/"
        origin = f"http://127.0.0.1:{stack.port}"
        with connect(url, origin=origin) as first:
            assert json.loads(first.recv(timeout=10))["type"] == "snapshot"
            with connect(url, origin=origin) as second:
                assert json.loads(second.recv(timeout=10))["type"] == "snapshot"
                assert json.loads(first.recv(timeout=10))["code"] == "replaced"
                with pytest.raises(ConnectionClosed) as closed:
                    first.recv(timeout=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409


def test_every_place_that_starts_the_server_goes_through_config_serve():
    """One setting, one launcher: the Docker image, compose, the demo, the browser-test stack and the benchmarks."""
    from pathlib import Path

    from config.serve import APPLICATION, DEFAULT_SERVER, daphne_args, parse

    root = Path(__file__).resolve().parents[2]
    assert '"-m", "config.serve"' in (root / "docker/Dockerfile").read_text()
    assert "python -m config.serve" in (root / "docker/compose.yml").read_text()
    for path in ("docker/Dockerfile", "docker/compose.yml", "tests/e2e/stack.py", "scripts/demo",
                 "deliberation/management/commands/demo.py", "benchmarks/load.py", "benchmarks/servers.py"):
        text = (root / path).read_text()
        for direct in ("daphne -b", "uvicorn config", "granian --", "granian config", '"-m", "daphne"',
                       '"-m", "uvicorn"', '"-m", "granian"'):
            assert direct not in text, (path, direct)
    assert "config.serve" in (root / "benchmarks/servers.py").read_text()
    # The demo command (deliberation, below config) names the launcher in settings instead of importing it.
    assert "import_string(settings.ASGI_SERVE)" in (root / "deliberation/management/commands/demo.py").read_text()
    assert settings.ASGI_SERVE == "config.serve.run"

    options = parse(["-b", "0.0.0.0", "-p", "8000"])
    assert (options.server, options.workers, options.application) == (DEFAULT_SERVER, 1, APPLICATION)
    args = daphne_args(parse(["--server", "daphne", "-p", "8000"]))
    assert args[args.index("--websocket-max-frame-size") + 1] == str(settings.WEBSOCKET_MAX_MESSAGE_BYTES)
    assert args[-1] == APPLICATION
    raw = "benchmarks.raw_consumer:application"
    assert parse(["-p", "1", raw]).application == raw


@pytest.mark.parametrize("argv", [["--workers", "0"], ["--server", "hypercorn"], ["-p", "eighty"],
                                  ["not an application"], ["--websocket-max-frame-size", "999999999"]])
def test_bad_options_are_refused_with_a_usage_message(argv, capsys):
    from config.serve import parse

    with pytest.raises(SystemExit) as refused:
        parse(argv)
    assert refused.value.code == 2
    assert "usage: python -m config.serve" in capsys.readouterr().err


@pytest.mark.parametrize("compression", [None, "1"])
def test_websocket_compression_is_negotiated_only_when_turned_on(tmp_path, compression):
    """permessage-deflate is off by default (WEBSOCKET_COMPRESSION: each socket's zlib contexts nearly doubled a
    worker's memory per connection, docs/load.md) and negotiated when turned on; the client offers it both times,
    and the socket works either way."""
    study = make_study(slug="deflate", min_group_size=3, max_group_size=3)
    participant = participant_consent(participant=participant_join(study=study, params={"PROLIFIC_PID": "d-1"}))
    env = {"WEBSOCKET_COMPRESSION": compression} if compression else {}
    with Stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path, worker=False,
               env=env) as stack:
        url = f"ws://127.0.0.1:{stack.port}/ws/p/{participant.token}/"
        with connect(url, origin=f"http://127.0.0.1:{stack.port}") as ws:  # offers permessage-deflate
            assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ("permessage-deflate" in negotiated) is bool(compression), negotiated
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            ws.send(json.dumps({"type": "ping", "version": "stale", "ref": "p"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
