"""Differential privacy inside the secure computation: the noise the compute
servers add (``noise``) and the privacy accountant (``accountant``)."""
