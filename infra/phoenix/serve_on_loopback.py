"""`phoenix serve` with its OTLP gRPC receiver on 127.0.0.1 (run by .venv-phoenix's Python).

Phoenix 20.26 binds the gRPC receiver to ``[::]`` whatever ``PHOENIX_HOST`` says, and turns it off only in read-only
mode (which also refuses writes). Nothing here sends gRPC (spans go over OTLP/HTTP), so the receiver's address is
rewritten to loopback before the server adds its port; HTTP already binds ``PHOENIX_HOST``.
"""

import sys

import grpc.aio._server as aio_server

_add = aio_server.Server.add_insecure_port


def _loopback(address: str) -> str:
    port = address.rsplit(":", 1)[1]
    return f"127.0.0.1:{port}"


def add_insecure_port(self, address: str) -> int:
    return _add(self, _loopback(address))


aio_server.Server.add_insecure_port = add_insecure_port

if __name__ == "__main__":
    from phoenix.server.main import main

    sys.argv = ["phoenix", "serve"]
    sys.exit(main())
