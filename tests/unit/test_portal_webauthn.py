"""The portal's WebAuthn challenges: one browser's, one purpose's, once, five minutes; and
a flood of them forgets the oldest first, never grows without bound."""

from __future__ import annotations

from portal._webauthn import (
    CHALLENGE_S,
    MAX_OPEN_CHALLENGES,
    PER_ADDRESS,
    Challenges,
    RelyingParty,
)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def new(challenges: Challenges, bound: str, address: str = "192.0.2.1") -> bytes:
    made = challenges.new(bound, address)
    assert made is not None
    return made


def test_a_challenge_is_taken_once_by_its_own_browser_in_time() -> None:
    clock = Clock()
    challenges = Challenges(clock)
    first = new(challenges, "get:form:a")
    assert challenges.take(first, "get:form:a")
    assert not challenges.take(first, "get:form:a")  # once
    other = new(challenges, "get:form:a")
    assert not challenges.take(other, "get:form:b")  # another browser's try closes it too
    assert not challenges.take(other, "get:form:a")
    purpose = new(challenges, "create:session:s")
    assert not challenges.take(purpose, "get:session:s")
    late = new(challenges, "get:form:a")
    clock.now += CHALLENGE_S
    assert not challenges.take(late, "get:form:a")
    made = {new(challenges, "x", f"198.51.100.{n}") for n in range(100)}
    assert len(made) == 100 and all(len(c) == 32 for c in made)  # random, 32 bytes


def test_one_address_holds_so_many_and_cannot_push_out_the_others() -> None:
    clock = Clock()
    challenges = Challenges(clock)
    theirs = new(challenges, "get:form:a", "192.0.2.1")
    flood = [challenges.new(f"get:form:{n}", "203.0.113.9") for n in range(PER_ADDRESS + 20)]
    assert sum(c is not None for c in flood) == PER_ADDRESS  # the rest: no passkey offered
    assert challenges.take(theirs, "get:form:a")  # the other address's is still open
    first = flood[0]
    assert first is not None and challenges.take(first, "get:form:0")
    assert challenges.new("get:form:again", "203.0.113.9") is not None  # one closed: one more
    clock.now += CHALLENGE_S  # all expired: the address may have them again
    assert all(challenges.new("get:form:x", "203.0.113.9") for _ in range(PER_ADDRESS))


def test_a_flood_from_many_addresses_forgets_the_oldest() -> None:
    challenges = Challenges(Clock())
    oldest = new(challenges, "get:form:a")
    newest = b""
    for n in range(MAX_OPEN_CHALLENGES):
        newest = new(challenges, "get:form:flood", f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    assert len(challenges._open) == MAX_OPEN_CHALLENGES
    assert not challenges.take(oldest, "get:form:a")
    assert challenges.take(newest, "get:form:flood")


def test_the_relying_party_is_the_public_urls_host_and_origin() -> None:
    party = RelyingParty("https://portal.example.net:8443")
    assert (party.rp_id, party.origin) == ("portal.example.net", "https://portal.example.net:8443")
    assert RelyingParty("http://localhost:8080/").origin == "http://localhost:8080"
