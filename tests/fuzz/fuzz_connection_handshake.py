"""Fuzz `protocol.Connection.receive_data` before the handshake, in both roles.

The first byte picks the role (even: a server that has sent nothing yet; odd: a client that
queued its HELLO), the next the read size; the rest is what the peer sent.
"""

from __future__ import annotations

from protocol import Connection

from . import _connection_driver as driver


def _server() -> tuple[Connection, Connection]:
    return driver.server(), driver.client()


def _client() -> tuple[Connection, Connection]:
    conn, peer = driver.client(), driver.server()
    peer.receive_data(conn.data_to_send())  # the peer has our HELLO, as it would
    return conn, peer


def one_input(data: bytes) -> None:
    if not data:
        return
    driver.check(_client if data[0] & 1 else _server, data[1:])


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
