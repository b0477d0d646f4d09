"""Fuzz `protocol.Connection.receive_data` after a real handshake, in both roles.

Each input starts from two Connections that completed the handshake and opened a stream each
way (so that DATA, WINDOW and RESET meet known streams); the first byte picks which side
receives the fuzz bytes (even: the server, odd: the client), the next the read size.
"""

from __future__ import annotations

import protocol
from protocol import Connection
from protocol._messages import Open

from . import _connection_driver as driver


def _open_pair() -> tuple[Connection, Connection]:
    client, server = driver.client(), driver.server()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    [request] = server.receive_data(client.data_to_send())
    assert isinstance(request, protocol.AuthenticationRequested)
    server.accept_authentication(driver.PUBLIC_KEY)
    client.receive_data(server.data_to_send())
    client.open_stream(Open("web", "192.0.2.7", 50000))  # stream 1
    server.open_stream(Open("setup"))  # stream 2
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server


def _server() -> tuple[Connection, Connection]:
    client, server = _open_pair()
    return server, client


def one_input(data: bytes) -> None:
    if not data:
        return
    driver.check(_open_pair if data[0] & 1 else _server, data[1:])


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
