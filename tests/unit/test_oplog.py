"""Privacy rule 2 on the operational log: whatever a message says, no full IP address and no
e-mail address reaches the log output."""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import MaskingFilter, mask_text, own
from service._oplog import JournalFormatter, _stdout_is_the_journal

# Filler around an address: letters, digits, dots, colons and punctuation, as log lines have
# (an address glued to digits and dots, `a1.10.0.0.1:443`, must not shield it).
_WORDS = st.text(alphabet="abcdefghij XYZ,;()=-/0123456789.:@[]%", max_size=12)


def _v4_forms(address: ipaddress.IPv4Address) -> list[str]:
    return [str(address), f"{address}:443", f"http://{address}:8080/x", f"({address})."]


def _v6_forms(address: ipaddress.IPv6Address) -> list[str]:
    return [
        str(address),
        address.exploded,
        f"[{address}]:443",
        f"https://[{address}]/path",
        f"{address}.",
        f"{address}%eth0",
    ]


def _hidden_v4(address: ipaddress.IPv4Address, output: str) -> bool:
    # The last octet is gone: the host address cannot be read back, the /24 can.
    return str(address) not in output or str(address).endswith(".0")


def _hidden_v6(address: ipaddress.IPv6Address, output: str) -> bool:
    network = ipaddress.IPv6Network(f"{address}/48", strict=False)
    if address == network.network_address:
        return True
    return str(address) not in output and address.exploded not in output


def _glued(before: str, after: str) -> bool:
    """Whether the filler runs into the address as more dotted numbers (then more than the
    host octet may be masked: an address hidden in `1.2.3.4.5` could start anywhere), or
    makes it part of an e-mail address (then it is removed whole)."""
    in_email = re.search(r"@[A-Za-z0-9\-]*$", before) is not None
    return in_email or before.endswith(".") or (after.startswith(".") and after[1:2].isdigit())


@given(st.ip_addresses(v=4), st.sampled_from(range(4)), _WORDS, _WORDS)
def test_ipv4_is_masked_to_its_slash_24(
    address: ipaddress.IPv4Address, form: int, before: str, after: str
) -> None:
    text = _v4_forms(address)[form]
    # A digit glued to the first or last octet makes another number, not this address.
    before += " " if before[-1:].isdigit() else ""
    after = (" " if after[:1].isdigit() else "") + after
    output = mask_text(before + text + after)
    assert _hidden_v4(address, output)
    octets = str(address).split(".")
    if not _glued(before, after) or form == 2:
        assert f"{octets[0]}.{octets[1]}.{octets[2]}.0" in output


@given(st.ip_addresses(v=6), st.sampled_from(range(6)), st.booleans(), _WORDS, _WORDS)
def test_ipv6_is_masked_to_its_slash_48(
    address: ipaddress.IPv6Address, form: int, upper: bool, before: str, after: str
) -> None:
    text = _v6_forms(address)[form]
    if upper:
        text = text.upper()  # RFC 5952 prefers lower case; logs of other tools do not
    output = mask_text(before + " " + text + " " + after).lower()
    assert _hidden_v6(address, output)
    if address.ipv4_mapped is not None:
        assert _hidden_v4(address.ipv4_mapped, output)
    else:
        network = ipaddress.IPv6Network(f"{address}/48", strict=False)
        assert str(network.network_address) in output


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_ipv6_keeps_the_ipv4_rule(address: ipaddress.IPv4Address) -> None:
    output = mask_text(f"peer ::ffff:{address} closed")
    assert _hidden_v4(address, output)
    assert output.startswith("peer ::ffff:") and output.endswith(".0 closed")


@given(
    st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._+\-]{0,15}", fullmatch=True),
    st.from_regex(r"([a-zA-Z0-9][a-zA-Z0-9\-]{0,10}\.){1,4}[a-zA-Z]{2,6}", fullmatch=True),
    _WORDS,
)
def test_email_addresses_are_removed(local: str, domain: str, around: str) -> None:
    email = f"{local}@{domain}"
    output = mask_text(f"{around} owner={email} {around}")
    assert email not in output
    assert f"@{domain}" not in output
    assert "<e-mail>" in output


def test_times_versions_and_counts_are_left_alone() -> None:
    text = "at 10:20:30 version 1.2.3 took 12.5 ms, 300 of 1000 (a::b is not here)"
    assert mask_text(text).startswith("at 10:20:30 version 1.2.3 took 12.5 ms, 300 of 1000")
    assert mask_text("not an address: 300.1.2.3 or 1.2.3") == "not an address: 300.1.2.3 or 1.2.3"


def test_an_address_glued_to_digits_and_dots_is_masked() -> None:
    # Each was left whole once: the address followed digits and dots.
    assert mask_text("a1.10.0.0.1:443") == "a1.10.0.0.0:443"
    assert "198.51.100.7" not in mask_text("id=v1.198.51.100.7")
    # tcpdump writes address.port: the address is masked, the port is not an octet.
    assert mask_text("192.0.2.5.443 > 198.51.100.7.52000") == "192.0.2.0.443 > 198.51.100.0.52000"
    # Any four dotted numbers that could be an address lose their last one.
    assert mask_text("1.2.3.4.5.6") == "1.2.3.0.0.0"


def test_filter_masks_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("nascloud.test.oplog")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("client %s sent %r for %s", "198.51.100.77", "x", "owner@example.com")
        try:
            raise ValueError("refused 2001:db8:abcd:12::5")
        except ValueError:
            logger.exception("failed for [2001:db8:abcd:12::5]:443")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "198.51.100.77" not in output and "198.51.100.0" in output
    assert "owner@example.com" not in output
    assert "2001:db8:abcd:12::5" not in output
    assert output.count("2001:db8:abcd::") >= 2
    assert "ValueError" in output


def _logged(message: str, *args: object, formatter: logging.Formatter | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    if formatter is not None:
        handler.setFormatter(formatter)
    logger = logging.getLogger("nascloud.test.oplog.own")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_the_daemons_own_addresses_are_written_as_they_are() -> None:
    listening = {"dns": ["127.0.0.1:5300", "[2001:db8:abcd:12::53]:53"]}
    output = _logged("listening on %s for %s", own(listening), "198.51.100.77")
    assert "127.0.0.1:5300" in output and "[2001:db8:abcd:12::53]:53" in output
    assert "198.51.100.77" not in output and "198.51.100.0" in output  # others' still masked
    # Only the marked argument: the same address in the message itself is masked.
    assert "198.51.100.7" not in _logged("from 198.51.100.7 on %s", own("127.0.0.1:53"))


def test_under_the_journal_every_line_carries_its_priority() -> None:
    formatter = JournalFormatter("%(levelname)s %(message)s")
    assert _logged("two\nlines", formatter=formatter) == "<4>WARNING two\n<4>lines\n"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad", None, None)
    assert formatter.format(record) == "<3>ERROR bad"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "fine", None, None)
    assert formatter.format(record) == "<6>INFO fine"


def test_the_journal_is_recognised_by_the_stream_it_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with (tmp_path / "out").open("w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        stat = os.fstat(out.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
        assert _stdout_is_the_journal()
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino + 1}")
        assert not _stdout_is_the_journal()  # a child whose output goes elsewhere
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not _stdout_is_the_journal()
