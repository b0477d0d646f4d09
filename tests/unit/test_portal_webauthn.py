"""The portal's WebAuthn challenges: one browser's, one purpose's, once, five minutes; and
a flood of them forgets the oldest first, never grows without bound."""

from __future__ import annotations

from portal._webauthn import CHALLENGE_S, MAX_OPEN_CHALLENGES, Challenges, RelyingParty


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_challenge_is_taken_once_by_its_own_browser_in_time() -> None:
    clock = Clock()
    challenges = Challenges(clock)
    first = challenges.new("get:form:a")
    assert challenges.take(first, "get:form:a")
    assert not challenges.take(first, "get:form:a")  # once
    other = challenges.new("get:form:a")
    assert not challenges.take(other, "get:form:b")  # another browser's try closes it too
    assert not challenges.take(other, "get:form:a")
    purpose = challenges.new("create:session:s")
    assert not challenges.take(purpose, "get:session:s")
    late = challenges.new("get:form:a")
    clock.now += CHALLENGE_S
    assert not challenges.take(late, "get:form:a")
    assert len({challenges.new("x") for _ in range(100)}) == 100  # random, 32 bytes
    assert all(len(c) == 32 for c in (first, other, late))


def test_a_flood_of_challenges_forgets_the_oldest() -> None:
    challenges = Challenges(Clock())
    oldest = challenges.new("get:form:a")
    newest = b""
    for _ in range(MAX_OPEN_CHALLENGES):
        newest = challenges.new("get:form:flood")
    assert len(challenges._open) == MAX_OPEN_CHALLENGES
    assert not challenges.take(oldest, "get:form:a")
    assert challenges.take(newest, "get:form:flood")


def test_the_relying_party_is_the_public_urls_host_and_origin() -> None:
    party = RelyingParty("https://portal.example.net:8443")
    assert (party.rp_id, party.origin) == ("portal.example.net", "https://portal.example.net:8443")
    assert RelyingParty("http://localhost:8080/").origin == "http://localhost:8080"
