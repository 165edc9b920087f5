"""What is trained and how, apart from how it is kept secret: models and plug-ins (``models``),
data sets (``data``), optimizers (``optim``), local training and the plaintext reference
trainer (``training``), the model owner's and data owners' workloads (``workload``),
differential privacy (``privacy``), the run folder on disk (``checkpoint``, ``report``).
Nothing here opens a socket or knows the wire."""
