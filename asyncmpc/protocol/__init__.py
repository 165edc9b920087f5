"""Each role's state machine, driven by messages (no sockets, no event loop)."""

from asyncmpc.protocol.aggregation import AggregationRound, RoundResult
from asyncmpc.protocol.events import Send, check_sender
from asyncmpc.protocol.server import ServerProtocol
from asyncmpc.protocol.shares import input_shares

__all__ = ["AggregationRound", "RoundResult", "Send", "ServerProtocol", "check_sender", "input_shares"]
