"""Start the ASGI server (daphne) with the project's websocket limits: the one way every script, the demo,
the Docker image and the tests start it.

    python -m config.serve -b 0.0.0.0 -p 8000 [--proxy-headers] [any other daphne option]

Adds daphne's own ``--websocket-max-frame-size`` / ``--websocket-max-message-size`` from the settings
(``WEBSOCKET_MAX_MESSAGE_BYTES``, see config/settings/base.py): a frame over the limit is refused by the server
from its header, before any of its payload is read or reaches the application. daphne's autobahn factory would
then drop the TCP connection (``failByDrop``, so the browser sees only 1006); the server class here sets the
factory's documented ``failByDrop=False`` option, so the client gets a close frame with 1009 ("message too big")
and the page can tell the participant why. The application is ``config.asgi:application`` unless one is given.
Settings are chosen exactly as ``config.asgi`` chooses them.
"""
from __future__ import annotations

import re
import sys

APPLICATION_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # module.path:attribute
APPLICATION = "config.asgi:application"
LIMIT_OPTIONS = ("--websocket-max-frame-size", "--websocket-max-message-size")


def daphne_args(args: list[str]) -> list[str]:
    """The daphne command line for ``args``, with the limits from the settings."""
    from django.conf import settings

    for option in LIMIT_OPTIONS:
        if any(a == option or a.startswith(option + "=") for a in args):
            raise SystemExit(f"{option} comes from the settings (WEBSOCKET_MAX_MESSAGE_BYTES); do not pass it.")
    limits = ["--websocket-max-frame-size", str(settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE),
              "--websocket-max-message-size", str(settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE)]
    application = [] if args and APPLICATION_PATH.match(args[-1]) else [APPLICATION]
    return [*limits, *args, *application]


def command_line():
    """daphne's command line with a server whose websocket factory fails connections with a close frame."""
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

    return LimitedCommandLine()


def run(args: list[str]) -> None:
    """Serve until stopped: ``args`` as daphne's command line, with the limits added."""
    command_line().run(daphne_args(args))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        from daphne.cli import CommandLineInterface

        CommandLineInterface().run(["--help"])
        return
    import config.asgi  # noqa: F401 - settings and the application, as the server will load them

    run(argv)


if __name__ == "__main__":
    main()
