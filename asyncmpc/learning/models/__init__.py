"""The models asyncmpc trains, and how a plug-in adds one.

A model's parameters are one flat float64 vector; secure aggregation neither knows nor cares
what it means. ``Model`` is the interface, ``build_model`` makes one from ``[training] model``
(``"logreg"``, ``"mlp"`` or a plug-in ``"module:attribute"``) and ``model_options``.
"""

from asyncmpc.learning.models.base import BuiltModel, Model, accuracy, build_model, checked, load_plugin

__all__ = ["Model", "BuiltModel", "accuracy", "build_model", "checked", "load_plugin"]
