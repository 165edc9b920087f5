"""The model interface, plug-ins by import string, and guarded calls into them.

A model is built by a *builder*: ``build(n_features, n_classes, options, seed) -> Model``,
where ``options`` is ``[training] model_options`` (a table) and ``seed`` is
``[training] seed``. The model owner and every data owner build the same model from the same
file. Built-ins: ``"logreg"`` (``asyncmpc.learning.models.logreg``) and ``"mlp"``
(``asyncmpc.learning.models.mlp``); anything else is ``"module:attribute"``, imported as Python servers
do (``uvicorn app:main``): from the working directory or an installed package.

Code from a plug-in is not ours: ``checked`` runs a call into it and turns whatever it raises,
or a result of the wrong type or shape, into a ``PluginError`` that names the plug-in and the
call, so the player that ran it reports one line (a data owner declines the round) and keeps
serving.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from asyncmpc.errors import PluginError

__all__ = ["BUILT_IN", "Model", "BuiltModel", "accuracy", "build_model", "checked", "load_plugin"]

Floats = NDArray[np.float64]
Labels = NDArray[np.int64]

BUILT_IN = {"logreg": "asyncmpc.learning.models.logreg:build", "mlp": "asyncmpc.learning.models.mlp:build"}
"""The names ``[training] model`` accepts besides a ``module:attribute`` plug-in."""


@runtime_checkable
class Model(Protocol):
    """A model whose parameters are one flat float64 vector of ``size`` elements.

    Inputs are feature matrices (rows are examples, already scaled by the deployment's global
    feature statistics); labels are class indices 0..n_classes-1.
    """

    n_features: int
    n_classes: int
    size: int

    def init(self) -> Floats:
        """The initial parameters (a function of the builder's seed only)."""
        ...

    def loss_and_gradient(self, theta: Floats, x: Floats, y: Labels) -> tuple[float, Floats]:
        """The mean loss over (x, y) and its gradient with respect to theta (no L2 term)."""
        ...

    def predict(self, theta: Floats, x: Floats) -> Labels:
        """Class indices 0..n_classes-1, one per row of x."""
        ...

    def penalised(self) -> NDArray[np.bool_]:
        """Which parameters ``[training] l2`` applies to (weights, not intercepts)."""
        ...

    # Optional: ``predict_proba(theta, x)``, each class's probability (a column per class
    # index); ``baseline()``, an unfitted scikit-learn estimator; ``export(theta)``, extra
    # arrays for model.npz.


_T = TypeVar("_T")


class BuiltModel:
    """A built model and the name it was built from (for errors and for model.npz)."""

    def __init__(self, spec: str, model: Model) -> None:
        self.spec = spec
        self.impl = model
        """What the builder returned."""
        self.size = int(model.size)
        self.n_features = int(model.n_features)
        self.n_classes = int(model.n_classes)

    def gradient(self, theta: Floats, x: Floats, y: Labels) -> tuple[float, Floats]:
        loss, grad = checked(self.spec, "loss_and_gradient", lambda: self.impl.loss_and_gradient(theta, x, y))
        grad = _vector(self.spec, "loss_and_gradient", grad, self.impl.size)
        try:
            return float(loss), grad
        except (TypeError, ValueError):
            shown = type(loss).__name__
            raise PluginError(
                f"model plug-in {self.spec!r}: loss_and_gradient returned a {shown} as the loss"
            ) from None

    def init(self) -> Floats:
        return _vector(self.spec, "init", checked(self.spec, "init", self.impl.init), self.impl.size)

    def predict(self, theta: Floats, x: Floats) -> Labels:
        labels = np.asarray(checked(self.spec, "predict", lambda: self.impl.predict(theta, x)))
        if labels.shape != (len(x),):
            raise PluginError(
                f"model plug-in {self.spec!r}: predict returned shape {labels.shape}, expected ({len(x)},)"
            )
        if labels.size and not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise PluginError(f"model plug-in {self.spec!r}: predict returned {labels.dtype} labels, not integers")
        if labels.size and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise PluginError(f"model plug-in {self.spec!r}: predict returned a class outside 0..{self.n_classes - 1}")
        return labels.astype(np.int64)

    def predict_proba(self, theta: Floats, x: Floats) -> Floats:
        """Each class's probability, a row per row of x and a column per class index (the
        model's optional ``predict_proba``); PluginError if it has none or its rows are not
        probabilities."""
        make = getattr(self.impl, "predict_proba", None)
        if make is None:
            raise PluginError(f"model plug-in {self.spec!r} has no predict_proba: it gives no probabilities")
        proba = _matrix(self.spec, "predict_proba", checked(self.spec, "predict_proba", lambda: make(theta, x)))
        if proba.shape != (len(x), self.n_classes):
            raise PluginError(
                f"model plug-in {self.spec!r}: predict_proba returned shape {proba.shape}, "
                f"expected ({len(x)}, {self.n_classes})"
            )
        if not (np.all(proba >= 0) and np.allclose(proba.sum(axis=1), 1.0)):
            raise PluginError(f"model plug-in {self.spec!r}: predict_proba returned rows that are not probabilities")
        return proba

    def baseline(self) -> Any:
        """An unfitted scikit-learn estimator to train on the pooled data in the clear, for
        comparison (the model's optional ``baseline()``), or None."""
        make = getattr(self.impl, "baseline", None)
        return None if make is None else checked(self.spec, "baseline", make)

    def export(self, theta: Floats) -> dict[str, NDArray[Any]]:
        """Extra arrays for model.npz (the model's optional ``export(theta)``)."""
        make = getattr(self.impl, "export", None)
        return {} if make is None else dict(checked(self.spec, "export", lambda: make(theta)))

    def penalised(self) -> NDArray[np.bool_]:
        mask = np.asarray(checked(self.spec, "penalised", self.impl.penalised), dtype=bool)
        if mask.shape != (self.impl.size,):
            raise PluginError(
                f"model plug-in {self.spec!r}: penalised returned shape {mask.shape}, expected ({self.impl.size},)"
            )
        return mask


def checked(spec: str, call: str, fn: Callable[[], _T], what: str = "model") -> _T:
    """``fn()``, with anything it raises turned into a PluginError naming the ``what`` plug-in
    ``spec`` and the ``call``."""
    try:
        return fn()
    except PluginError:
        raise
    except Exception as exc:  # a plug-in's failure is reported, not ours to crash on
        public = f"{what} plug-in {spec!r}: {call} raised {type(exc).__name__}"
        raise PluginError(f"{public}: {exc}", public) from exc


def _vector(spec: str, call: str, value: object, size: int) -> Floats:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        shown = type(value).__name__
        raise PluginError(f"model plug-in {spec!r}: {call} returned {shown}, not a float vector") from None
    if arr.shape != (size,):
        raise PluginError(f"model plug-in {spec!r}: {call} returned shape {arr.shape}, expected ({size},)")
    return arr


def _matrix(spec: str, call: str, value: object) -> Floats:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        shown = type(value).__name__
        raise PluginError(f"model plug-in {spec!r}: {call} returned {shown}, not a float matrix") from None


def load_plugin(spec: str, what: str = "model") -> Callable[..., Any]:
    """The attribute ``spec`` names (``"module:attribute"``, or a built-in name), imported with
    the working directory on the path; PluginError naming ``spec`` if that fails."""
    target = BUILT_IN.get(spec, spec) if what == "model" else spec
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        known = ", ".join(repr(k) for k in BUILT_IN) if what == "model" else "none"
        raise PluginError(f"{what} plug-in {spec!r}: expected 'module:attribute' (built-in: {known})")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs the plug-in's code
        why = f"{type(exc).__name__}: {exc}"
        raise PluginError(f"{what} plug-in {spec!r}: cannot import {module_name}: {why}") from exc
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise PluginError(f"{what} plug-in {spec!r}: module {module_name} has no attribute {attribute!r}") from None
    if not callable(found):
        raise PluginError(f"{what} plug-in {spec!r}: {attribute} is not callable")
    return found  # type: ignore[no-any-return]


def build_model(spec: str, n_features: int, n_classes: int, options: Mapping[str, Any], seed: int) -> BuiltModel:
    """Build the model ``spec`` names; PluginError naming it if the plug-in fails or what it
    returns lacks a method of ``Model``."""
    builder = load_plugin(spec)
    model = checked(spec, "build", lambda: builder(n_features, n_classes, dict(options), seed))
    needed = ("init", "loss_and_gradient", "predict", "penalised")
    missing = [m for m in needed if not callable(getattr(model, m, None))]
    if missing:
        raise PluginError(f"model plug-in {spec!r}: what it built has no {', '.join(missing)}")
    for name, least in (("size", 1), ("n_features", 1), ("n_classes", 2)):
        value = getattr(model, name, None)
        if not isinstance(value, int | np.integer) or value < least:
            raise PluginError(
                f"model plug-in {spec!r}: what it built has {name} {value!r}, expected an integer >= {least}"
            )
    return BuiltModel(spec, model)


def accuracy(plugin: BuiltModel, theta: Floats, x: Floats, y: Labels) -> float:
    """The fraction of rows of x whose predicted class is y (nan without rows)."""
    if len(y) == 0:
        return float("nan")
    return float(np.mean(plugin.predict(theta, x) == y))
