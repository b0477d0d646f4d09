"""The state tables in code against the tables in `protocol/SPEC.md`, parsed from the spec's
own text: 9.1 (frames each role accepts in each state) and 7.2 (stream states). Every cell is
compared both ways, so a cell changed on either side fails here. `SPEC_ALLOWED` and
`SPEC_STREAM_TRANSITIONS` are also the expected answers of the behavioural cell tests in
test_protocol_connection.py."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Final

import pytest

import protocol
from protocol import ConnectionState, Role
from protocol._frames import FrameType
from protocol._state import ALLOWED
from protocol._streams import TRANSITIONS, StreamInput, StreamState

SPEC: Final = Path(protocol.__file__).with_name("SPEC.md")


def _table(heading: str, header: list[str]) -> list[list[str]]:
    """The rows of the first table under `heading`, after checking its header row."""
    lines = SPEC.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading) + 1
    section = list(itertools.takewhile(lambda line: not line.startswith("#"), lines[start:]))
    table = [line for line in section if line.startswith("|")]
    assert table, f"no table under {heading!r}"
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table]
    assert rows[0] == header, f"{heading!r}: the table's columns changed: {rows[0]}"
    assert set("".join(rows[1])) <= set("-:"), f"{heading!r}: no separator row"
    body = rows[2:]
    assert all(len(row) == len(header) for row in body), f"{heading!r}: a ragged row"
    return body


def _connection_table() -> dict[tuple[Role, ConnectionState], frozenset[FrameType]]:
    """SPEC.md 9.1: `both` stands for each role; `none` for no frame at all."""
    states = {state.value: state for state in ConnectionState}
    roles = {"client": (Role.CLIENT,), "server": (Role.SERVER,), "both": tuple(Role)}
    cells: dict[tuple[Role, ConnectionState], frozenset[FrameType]] = {}
    for role_text, state_text, frames_text in _table(
        "### 9.1 States", ["role", "state", "frames accepted"]
    ):
        names = [] if frames_text == "none" else [n.strip() for n in frames_text.split(",")]
        frames = frozenset(FrameType[name] for name in names)
        for role in roles[role_text]:
            key = (role, states[state_text])
            assert key not in cells, f"SPEC.md 9.1 lists {key} twice"
            cells[key] = frames
    return cells


_STREAM_COLUMNS: Final = {
    "send DATA": (StreamInput.SEND_DATA,),
    "send END_STREAM": (StreamInput.SEND_END,),
    "receive DATA": (StreamInput.RECV_DATA,),
    "receive END_STREAM": (StreamInput.RECV_END,),
    "RESET either way": (StreamInput.SEND_RESET, StreamInput.RECV_RESET),
}


def _stream_table() -> dict[tuple[StreamState, StreamInput], StreamState]:
    """SPEC.md 7.2: a cell names the next state; `—` (or an unlisted pair) is not allowed."""
    states = {state.value: state for state in StreamState}
    header = ["state", *_STREAM_COLUMNS]
    cells: dict[tuple[StreamState, StreamInput], StreamState] = {}
    for row in _table("### 7.2 States", header):
        state = states[row[0]]
        for column, cell in zip(header[1:], row[1:], strict=True):
            if cell == "—":
                continue
            for event in _STREAM_COLUMNS[column]:
                cells[(state, event)] = states[cell]
    return cells


SPEC_ALLOWED: Final = _connection_table()
SPEC_STREAM_TRANSITIONS: Final = _stream_table()


def test_the_spec_tables_parse_to_what_they_say() -> None:
    # A parser that silently read nothing would make every comparison below vacuous.
    assert len(SPEC_ALLOWED) == 9  # five handshake rows, two `both` rows
    assert SPEC_ALLOWED[(Role.SERVER, ConnectionState.AUTH_PENDING)] == {FrameType.GOAWAY}
    assert SPEC_ALLOWED[(Role.CLIENT, ConnectionState.CLOSED)] == frozenset()
    assert len(SPEC_STREAM_TRANSITIONS) == 14  # 5 + 4 + 5 cells, RESET counted both ways
    half_local = SPEC_STREAM_TRANSITIONS[(StreamState.HALF_CLOSED_LOCAL, StreamInput.RECV_END)]
    assert half_local is StreamState.CLOSED


@pytest.mark.parametrize(
    ("role", "state"),
    list(itertools.product(Role, ConnectionState)),
    ids=lambda value: value.name,
)
def test_connection_allowed_matches_spec_9_1(role: Role, state: ConnectionState) -> None:
    key = (role, state)
    # A state the spec does not list for a role is one the role never enters: no entry in code.
    assert (key in SPEC_ALLOWED) or (key not in ALLOWED), f"{key} is in code, not SPEC.md 9.1"
    spec = SPEC_ALLOWED.get(key, frozenset())
    code = ALLOWED.get(key, frozenset())
    assert code - spec == set(), f"{key}: accepted in code, not in SPEC.md 9.1"
    assert spec - code == set(), f"{key}: accepted in SPEC.md 9.1, not in code"


@pytest.mark.parametrize(
    ("state", "event"),
    list(itertools.product(StreamState, StreamInput)),
    ids=lambda value: value.name,
)
def test_stream_transitions_match_spec_7_2(state: StreamState, event: StreamInput) -> None:
    # Both ways: a pair only in code, only in the spec, or with another next state all fail.
    assert TRANSITIONS.get((state, event)) is SPEC_STREAM_TRANSITIONS.get((state, event))
