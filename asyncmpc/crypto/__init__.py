"""The arithmetic of the secure computation, pure numpy and ``cryptography``: the ring Z_2^64
and fixed-point encoding (``ring``), the prime field of the MACs (``field``), AES-CTR randomness
(``prf``), 2-of-3 replicated secret sharing (``rss``) and the one-time field MAC (``macs``)."""
