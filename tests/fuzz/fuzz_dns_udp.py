"""Fuzz ddnsd's query-to-answer path (`ddnsd._answer.Responder.respond`) on raw datagrams.

Contract: it never raises; the reply is silence or a well-formed response with the query's
ID; UDP replies fit 1232 bytes; the cache never changes an answer: asking again gives the same
bytes, and a warm Responder answers another ID or letter case as a fresh one does.
"""

from __future__ import annotations

from ddnsd._answer import Responder

from ._dns import ZONES, check_reply


def one_input(data: bytes) -> None:
    warm = Responder(ZONES)
    first = warm.respond(data)
    check_reply(data, first)
    if first is not None:
        assert len(first) <= 1232, len(first)
    assert warm.respond(data) == first  # from the cache now, perhaps
    if len(data) >= 2:
        # Not always the same answer with the ID spliced: a compression pointer may point
        # into the header, so that the ID is part of the name. What the cache gives must be
        # what a cold Responder says.
        other = bytes([data[0] ^ 0x5A, data[1] ^ 0xA5]) + data[2:]
        again = warm.respond(other)
        check_reply(other, again)
        assert again == Responder(ZONES).respond(other), (first, again)
    tcp = warm.respond(data, tcp=True)
    check_reply(data, tcp)
    assert tcp == Responder(ZONES).respond(data, tcp=True)
    # Another letter case of the same question: the warm cache answers as a cold one would.
    swapped = data[:12] + data[12:].swapcase()
    assert warm.respond(swapped) == Responder(ZONES).respond(swapped)


def main() -> None:
    from ._atheris import fuzz

    fuzz(one_input)


if __name__ == "__main__":
    main()
