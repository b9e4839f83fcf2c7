"""Start the ASGI server with the project's websocket limits: the one way every script, the demo, the Docker
image, the tests and the benchmarks start it.

    python -m config.serve [--server uvicorn|granian|daphne] [--workers N] [-b HOST] [-p PORT] [--proxy-headers]
                           [--access-log] [module.path:application]

The default is uvicorn (uvloop, httptools, the websockets protocol): the fastest server here that passes the
project's tests (benchmarks/servers.py, docs/deployment.md). granian was as fast or faster on the raw consumer but
does not carry out a close the application sends from a channel-layer handler (the socket cap's 4409 never
reaches the client: tests/e2e/test_ws_frame_limit.py), so it is selectable, not the default.
``--workers N`` runs N worker processes that accept on ONE listening socket (granian's and uvicorn's own workers;
for daphne, N copies adopting one socket bound here), so a proxy and clients see one address; a worker that dies
is started again. Workers share nothing but the Redis channel layer and PostgreSQL.

permessage-deflate is off unless ``WEBSOCKET_COMPRESSION`` is set (uvicorn's ``ws_per_message_deflate``; granian and
daphne do not compress): a snapshot is a few KB, and each socket's zlib contexts nearly doubled a worker's memory
per connection (docs/load.md).

The websocket message limit is ``WEBSOCKET_MAX_MESSAGE_BYTES`` from the settings (config/settings/base.py):
- uvicorn: ``ws_max_size``; the websockets protocol reads the frame header, refuses a frame over the limit
  before reading its payload and closes with 1009 ("message too big");
- daphne: ``--websocket-max-frame-size`` / ``--websocket-max-message-size``, with autobahn's ``failByDrop``
  off so the client gets the 1009 close frame instead of a dropped connection;
- granian has no such option: the application is wrapped in :class:`MessageLimit`, which closes the socket with
  1009 when a message over the limit arrives (granian has read it by then; its own cap is tungstenite's).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import import_module

APPLICATION = "config.asgi:application"
SERVERS = ("uvicorn", "granian", "daphne")
DEFAULT_SERVER = "uvicorn"  # fastest that passes the tests (docs/deployment.md#asgi-server)
APPLICATION_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # module.path:attribute
CLOSE_MESSAGE_TOO_BIG = 1009  # RFC 6455 7.4.1


@dataclass(frozen=True)
class Options:
    server: str
    workers: int
    host: str
    port: int
    proxy_headers: bool
    access_log: bool
    application: str
    fd: int | None = None  # daphne workers: a listening socket inherited from the parent


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def application_path(text: str) -> str:
    if not APPLICATION_PATH.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not module.path:attribute")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m config.serve", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER, help=f"default: {DEFAULT_SERVER}")
    p.add_argument("--workers", type=positive, default=1, help="worker processes on the one port (default 1)")
    p.add_argument("-b", "--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("-p", "--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--proxy-headers", action="store_true",
                   help="take the client address and scheme from X-Forwarded-For/-Proto (behind nginx)")
    p.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("application", nargs="?", default=APPLICATION, type=application_path,
                   help=f"the ASGI application (default {APPLICATION})")
    return p


def parse(argv: list[str]) -> Options:
    a = parser().parse_args(argv)
    return Options(server=a.server, workers=a.workers, host=a.bind, port=a.port, proxy_headers=a.proxy_headers,
                   access_log=a.access_log, application=a.application, fd=a.fd)


def load(application: str):
    """Import the application (Django is set up on the way: config.asgi, or a benchmark app's own settings)."""
    module, attribute = application.split(":")
    return getattr(import_module(module), attribute)


def setting(name: str):
    """A value (a limit, a switch) from the loaded settings (an application with settings of its own, like the
    benchmarks' raw consumer, gets the base settings' value)."""
    from django.conf import settings

    if hasattr(settings, name):
        return getattr(settings, name)
    from config.settings import base

    return getattr(base, name)


def message_limit() -> int:
    return setting("WEBSOCKET_MAX_MESSAGE_BYTES")


class MessageLimit:
    """ASGI middleware: a websocket message over ``limit`` bytes closes the socket with 1009; the application
    sees a disconnect, never the message."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)

        async def limited_receive():
            message = await receive()
            if message["type"] == "websocket.receive":
                size = len(message.get("bytes") or b"") + len((message.get("text") or "").encode())
                if size > self.limit:
                    await send({"type": "websocket.close", "code": CLOSE_MESSAGE_TOO_BIG})
                    return {"type": "websocket.disconnect", "code": CLOSE_MESSAGE_TOO_BIG}
            return message

        return await self.app(scope, limited_receive, send)


def granian_application():
    """granian's application factory (each worker calls it): the limited app, behind the proxy-header wrapper."""
    from granian.utils.proxies import wrap_asgi_with_proxy_headers

    app = MessageLimit(load(os.environ["CONFIG_SERVE_APPLICATION"]), message_limit())
    return wrap_asgi_with_proxy_headers(app, "*") if os.environ.get("CONFIG_SERVE_PROXY_HEADERS") else app


def run_uvicorn(o: Options) -> None:
    import uvicorn

    uvicorn.run(o.application, host=o.host, port=o.port, workers=o.workers, loop="uvloop", http="httptools",
                ws="websockets-sansio", ws_max_size=message_limit(),
                ws_per_message_deflate=bool(setting("WEBSOCKET_COMPRESSION")), lifespan="off", access_log=o.access_log,
                proxy_headers=o.proxy_headers, forwarded_allow_ips="*" if o.proxy_headers else None,
                log_level="info" if o.access_log else "warning")


def run_granian(o: Options) -> None:
    from granian import Granian

    os.environ["CONFIG_SERVE_APPLICATION"] = o.application
    if o.proxy_headers:
        os.environ["CONFIG_SERVE_PROXY_HEADERS"] = "1"
    Granian("config.serve:granian_application", factory=True, address=o.host, port=o.port, interface="asginl",
            workers=o.workers, loop="uvloop", websockets=True, log_access=o.access_log, log_level="warning",
            respawn_failed_workers=True, respawn_interval=0.5).serve()


def daphne_args(o: Options) -> list[str]:
    """daphne's command line for one process, with the limits from the settings."""
    where = ["--fd", str(o.fd)] if o.fd is not None else ["-b", o.host, "-p", str(o.port)]
    return ["--websocket-max-frame-size", str(setting("DAPHNE_WEBSOCKET_MAX_FRAME_SIZE")),
            "--websocket-max-message-size", str(setting("DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE")), *where,
            *(["--proxy-headers"] if o.proxy_headers else []),
            "--access-log", "-" if o.access_log else os.devnull, o.application]


def run_daphne(o: Options) -> None:
    """One daphne process whose websocket factory fails connections with a close frame, not a dropped one."""
    from daphne.cli import CommandLineInterface
    from daphne.server import Server
    from twisted.internet import reactor

    class LimitedServer(Server):
        def run(self):
            # Runs when the reactor starts: after run() made the factory, before any connection is accepted.
            reactor.callWhenRunning(lambda: self.ws_factory.setProtocolOptions(failByDrop=False))
            super().run()

    class LimitedCommandLine(CommandLineInterface):
        server_class = LimitedServer

    LimitedCommandLine().run(daphne_args(o))


def run_daphne_workers(o: Options) -> None:
    """daphne has no workers of its own: bind one socket here and keep N daphne processes adopting it."""
    listener = socket.create_server((o.host, o.port), backlog=2048)
    fd = listener.fileno()
    command = [sys.executable, "-m", "config.serve", "--server", "daphne", "--fd", str(fd),
               *(["--proxy-headers"] if o.proxy_headers else []), *(["--access-log"] if o.access_log else []),
               o.application]
    workers: list[subprocess.Popen] = []
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        for worker in workers:
            worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers += [subprocess.Popen(command, pass_fds=[fd]) for _ in range(o.workers)]
    while not stopping:
        pid, _ = os.wait()
        for i, worker in enumerate(workers):
            if worker.pid == pid and not stopping:
                worker.returncode = -1
                time.sleep(0.5)  # a worker that cannot start at all must not spin the machine
                workers[i] = subprocess.Popen(command, pass_fds=[fd])  # a crashed worker is replaced
    for worker in workers:
        worker.wait()


def run(argv: list[str]) -> None:
    """Serve until stopped (the demo command calls this through settings.ASGI_SERVE)."""
    o = parse(argv)
    load(o.application)  # settings and the application as the workers will load them; a bad path fails here
    if o.server == "uvicorn":
        run_uvicorn(o)
    elif o.server == "granian":
        run_granian(o)
    elif o.workers > 1 and o.fd is None:
        run_daphne_workers(o)
    else:
        run_daphne(o)


def main(argv: list[str] | None = None) -> None:
    run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
