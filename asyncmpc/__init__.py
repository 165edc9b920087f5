"""asyncmpc: secure aggregation for federated learning, every player its own process.

The packages are layers; a module imports only from its own package and from layers below it
(``tests/test_layers.py`` checks this on every run):

    cli        the ``asyncmpc`` command, and the benchmark behind ``asyncmpc bench``
    roles      the players as asyncio programs: a protocol machine fed from the network
    net        connections, TLS, dialling, framing on sockets, the event loop
    protocol   sans-I/O state machines of a round (messages and time in, actions out)
    learning   models, data, optimizers, training, privacy accounting, checkpoints (no sockets)
    wire       message declarations, msgpack codec, length-prefixed frames (bytes in, messages out)
    crypto     the ring Z_2^64, the field F_p, AES-CTR randomness, replicated sharing, MACs
    config, errors   hosts.toml as frozen dataclasses; every exception class

``protocol`` and ``learning`` sit side by side: neither imports the other.
"""
