"""The players as asyncio programs, gluing protocol state machines to the runtime."""
