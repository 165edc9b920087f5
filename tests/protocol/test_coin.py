"""The servers' coin (``protocol.coin``): commit, then reveal."""

from __future__ import annotations

import itertools

import pytest

from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.coin import CoinToss

SERVERS = (0, 1, 2)


def _toss(servers: tuple[int, ...] = SERVERS, context: bytes = b"s:1") -> list[CoinToss]:
    tosses = [CoinToss(i, servers, context) for i in servers]
    for a, b in itertools.permutations(tosses, 2):
        b.committed(a.me, a.commitment())
    return tosses


def _reveal(tosses: list[CoinToss]) -> None:
    for a, b in itertools.permutations(tosses, 2):
        b.revealed(a.me, a.reveal())


def test_every_server_gets_the_same_coin_and_no_two_rounds_the_same() -> None:
    tosses = _toss()
    assert all(t.coin() is None for t in tosses)
    _reveal(tosses)
    coins = {t.coin() for t in tosses}
    assert len(coins) == 1 and None not in coins
    again = _toss()
    _reveal(again)
    assert again[0].coin() != tosses[0].coin()
    two = _toss((0, 2), b"s:2")  # a round with a server down: the two others toss
    _reveal(two)
    assert two[0].coin() == two[1].coin() is not None


def test_no_server_reveals_before_every_commitment_is_in() -> None:
    lone = CoinToss(0, SERVERS, b"s:1")
    with pytest.raises(ValueError, match="only once every server has committed"):
        lone.reveal()
    with pytest.raises(RemoteProtocolError, match="revealed a coin before committing"):
        lone.revealed(1, bytes(32))


def test_a_server_that_reveals_other_bytes_or_commits_twice_is_named() -> None:
    a, _, c = _toss()
    with pytest.raises(RemoteProtocolError, match="revealed another coin than it committed to") as info:
        a.revealed(1, bytes(32))
    assert info.value.peer == "1"
    with pytest.raises(RemoteProtocolError, match="committed to two coins"):
        a.committed(2, bytes(32))
    a.committed(2, c.commitment())  # the same one again is harmless
    with pytest.raises(RemoteProtocolError, match="is not another server"):
        a.committed(0, a.commitment())
    with pytest.raises(RemoteProtocolError, match="is not another server"):
        CoinToss(0, (0, 1), b"s").committed(2, bytes(32))


def test_a_commitment_binds_the_round_and_the_server() -> None:
    a = CoinToss(0, SERVERS, b"s:1", random_bytes=lambda n: bytes(n))
    b = CoinToss(0, SERVERS, b"s:2", random_bytes=lambda n: bytes(n))
    c = CoinToss(1, SERVERS, b"s:1", random_bytes=lambda n: bytes(n))
    assert len({a.commitment(), b.commitment(), c.commitment()}) == 3
