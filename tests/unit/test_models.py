"""Models and plug-ins (no MPC, no I/O): gradients, the MLP against scikit-learn, plug-in errors,
local steps and weighting by examples."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmpc.config import parse_config
from asyncmpc.errors import ConfigError, PluginError
from asyncmpc.learning.data import Dataset
from asyncmpc.learning.models import build_model
from asyncmpc.learning.training import ModelOwnerState, OwnerWork, ReferenceTrainer, load_model
from tests.helpers import ROOT, hosts_toml

MODELS = [
    ("logreg", {}),
    ("mlp", {"hidden_layers": [5], "activation": "relu"}),
    ("mlp", {"hidden_layers": [4, 3], "activation": "tanh"}),
    ("mlp", {"hidden_layers": [3], "activation": "logistic"}),
    ("examples.poly_softmax:build", {"degree": 2}),
]


@pytest.fixture(autouse=True)
def _project_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # plug-ins are imported from the working directory


def config(training: str = "", owners: int = 3) -> object:
    return parse_config(hosts_toml(owners, ports=[9000, 9001, 9002, 9003], training=training), "t.toml")


@pytest.mark.parametrize(("spec", "options"), MODELS, ids=lambda v: str(v))
@settings(max_examples=10, deadline=None)
@given(n_classes=st.integers(2, 4), n_features=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_every_models_gradient_matches_finite_differences(
    spec: str, options: dict, n_classes: int, n_features: int, seed: int
) -> None:
    if spec.startswith("examples.") and n_classes == 2:
        n_classes = 3  # the example is a softmax over every class
    rng = np.random.default_rng(seed)
    model = build_model(spec, n_features, n_classes, options, seed)
    x = rng.normal(size=(12, n_features))
    y = rng.integers(0, n_classes, size=12)
    theta = rng.normal(size=model.size) * 0.5
    _, grad = model.gradient(theta, x, y)
    eps = 1e-6
    numeric = np.array(
        [
            (model.gradient(theta + eps * e, x, y)[0] - model.gradient(theta - eps * e, x, y)[0]) / (2 * eps)
            for e in np.eye(model.size)
        ]
    )
    np.testing.assert_allclose(grad, numeric, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_mlp_predicts_as_scikit_learns_mlp_with_the_same_weights(activation: str, n_classes: int) -> None:
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(40, 5)), np.arange(40) % n_classes
    model = build_model("mlp", 5, n_classes, {"hidden_layers": [6, 4], "activation": activation}, 3)
    theta = rng.normal(size=model.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one iteration does not converge: the weights are replaced below
        clf = MLPClassifier(hidden_layer_sizes=(6, 4), activation=activation, max_iter=1).fit(x, y)
    layers = model.impl.layers(theta)  # type: ignore[attr-defined]
    clf.coefs_ = [w.copy() for w, _ in layers]
    clf.intercepts_ = [b.copy() for _, b in layers]
    np.testing.assert_array_equal(model.predict(theta, x), clf.predict(x))
    # and its loss is scikit-learn's log loss without the L2 term
    from sklearn.metrics import log_loss

    loss, _ = model.gradient(theta, x, y)
    assert loss == pytest.approx(log_loss(y, clf.predict_proba(x), labels=list(range(n_classes))), rel=1e-9)


def test_the_mlps_initial_parameters_are_a_function_of_the_seed_and_only_weights_are_penalised() -> None:
    a = build_model("mlp", 4, 3, {"hidden_layers": [5]}, 1)
    assert np.array_equal(a.init(), build_model("mlp", 4, 3, {"hidden_layers": [5]}, 1).init())
    assert not np.array_equal(a.init(), build_model("mlp", 4, 3, {"hidden_layers": [5]}, 2).init())
    bound = np.sqrt(6 / (4 + 5))
    assert np.abs(a.init()[:20]).max() <= bound
    assert a.penalised().sum() == 4 * 5 + 5 * 3 and a.size == 4 * 5 + 5 + 5 * 3 + 3


class _Broken:
    n_features, n_classes, size = 2, 2, 3

    def init(self) -> np.ndarray:
        return np.zeros(3)

    def loss_and_gradient(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return 0.0, np.zeros(4)  # the wrong shape

    def predict(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("predict is broken")

    def penalised(self) -> np.ndarray:
        return np.ones(3, dtype=bool)


def broken_builder(n_features: int, n_classes: int, options: dict, seed: int) -> _Broken:
    return _Broken()


def shapeless_builder(n_features: int, n_classes: int, options: dict, seed: int) -> object:
    class Shapeless(_Broken):
        n_classes = None  # type: ignore[assignment]

    return Shapeless()


def failing_builder(n_features: int, n_classes: int, options: dict, seed: int) -> _Broken:
    raise KeyError("hidden")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "no_such_module:build",
            "model plug-in 'no_such_module:build': cannot import no_such_module: "
            "ModuleNotFoundError: No module named 'no_such_module'",
        ),
        (
            "tests.unit.test_models:nothing",
            "model plug-in 'tests.unit.test_models:nothing': module tests.unit.test_models has no attribute 'nothing'",
        ),
        (
            "tests.unit.test_models:failing_builder",
            "model plug-in 'tests.unit.test_models:failing_builder': build raised KeyError: 'hidden'",
        ),
        (
            "logreg:build",
            "model plug-in 'logreg:build': cannot import logreg: ModuleNotFoundError: No module named 'logreg'",
        ),
        (
            "tests.unit.test_models:shapeless_builder",
            "model plug-in 'tests.unit.test_models:shapeless_builder': what it built has n_classes None, "
            "expected an integer >= 2",
        ),
        (
            "mlp",
            "model plug-in 'mlp': build raised ValueError: model_options.activation = 'swish': "
            "expected one of relu, tanh, logistic",
        ),
    ],
)
def test_a_plug_in_that_cannot_be_built_is_one_error_naming_it(spec: str, message: str) -> None:
    options = {"activation": "swish"} if spec == "mlp" else {}
    with pytest.raises(PluginError) as info:
        build_model(spec, 2, 2, options, 0)
    assert str(info.value) == message


def test_a_plug_ins_wrong_shape_or_exception_is_a_plugin_error_naming_the_call() -> None:
    model = build_model("tests.unit.test_models:broken_builder", 2, 2, {}, 0)
    x, y = np.zeros((3, 2)), np.zeros(3, dtype=np.int64)
    with pytest.raises(PluginError, match=r"loss_and_gradient returned shape \(4,\), expected \(3,\)"):
        model.gradient(np.zeros(3), x, y)
    with pytest.raises(PluginError, match="predict raised RuntimeError: predict is broken"):
        model.predict(np.zeros(3), x)
    logreg = build_model("logreg", 2, 2, {}, 0)
    logreg.impl = type("Off", (), {"predict": lambda self, theta, x: np.full(len(x), 2)})()  # type: ignore[assignment]
    with pytest.raises(PluginError, match=r"predict returned a class outside 0\.\.1"):
        logreg.predict(np.zeros(3), x)


def test_the_config_accepts_built_in_models_and_import_strings_and_refuses_the_rest() -> None:
    assert config('model = "mlp"\n[training.model_options]\nhidden_layers = [8]').training.model_options == {  # type: ignore[attr-defined]
        "hidden_layers": [8]
    }
    assert config('model = "pkg.models:build"').training.model == "pkg.models:build"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="model: 'cnn' is not one of logreg, mlp, nor a plug-in 'module:builder'"):
        config('model = "cnn"')
    with pytest.raises(ConfigError, match="model_options: only numbers, strings, booleans, lists and tables"):
        config('model = "mlp"\n[training.model_options]\nwhen = 1979-05-27T07:32:00Z')
    with pytest.raises(ConfigError, match="classes: list at least 2 class labels for a data plug-in"):
        config('dataset = "pkg.data:load"')


def test_one_local_step_unweighted_is_todays_gradient_and_more_steps_sum_the_local_gradients() -> None:
    cfg = config("rounds = 1")
    rng = np.random.default_rng(0)
    data = Dataset(rng.normal(size=(30, 3)), rng.integers(0, 2, size=30))
    mean, scale = np.zeros(3), np.ones(3)
    one = OwnerWork(cfg, 0, data, ("a", "b"))  # type: ignore[arg-type]
    theta = np.array([0.1, -0.2, 0.3, 0.05])
    loss, grad = one.model.gradient(theta, data.x, data.y)
    assert np.array_equal(one.contribution(theta, mean, scale, 1), np.concatenate([grad, [loss]]))
    training = dataclasses.replace(cfg.training, local_steps=3, local_learning_rate=0.5, clip_norm=1e9)  # type: ignore[attr-defined]
    three = OwnerWork(dataclasses.replace(cfg, training=training), 0, data, ("a", "b"))  # type: ignore[arg-type]
    got = three.contribution(theta, mean, scale, 1)
    # weighted by examples by default with local steps: n * update, n * loss, n
    n = len(data.y)
    assert got[-1] == n and got[-2] == pytest.approx(n * loss)
    path, total = theta, np.zeros(4)
    for _ in range(3):
        g = one.model.gradient(path, data.x, data.y)[1]
        total, path = total + g, path - 0.5 * g
    np.testing.assert_allclose(got[:-2] / n, total, rtol=1e-12)
    np.testing.assert_allclose(theta - 0.5 * got[:-2] / n, path, rtol=1e-12)  # (theta_0 - theta_E) / lr


def test_weighting_by_examples_divides_by_the_summed_counts() -> None:
    cfg = config('rounds = 1\noptimizer = "sgd"\nmomentum = 0.0\nl2 = 0.0\nweighting = "examples"\nlearning_rate = 1.0')
    state = ModelOwnerState(cfg, build_model("logreg", 1, 2, {}, 0), ("a", "b"))  # type: ignore[arg-type]
    # two owners: 10 examples with update 1.0, 30 with update 3.0: the mean is 2.5, not 2.0
    total = np.array([10 * 1.0, 10 * 1.0, 10 * 0.5, 10]) + np.array([30 * 3.0, 30 * 3.0, 30 * 0.7, 30])
    loss = state.apply(total, 2)
    np.testing.assert_allclose(state.theta, [-2.5, -2.5])
    assert loss == pytest.approx((5 + 21) / 40)


@pytest.mark.parametrize("steps", [1, 3])
def test_the_reference_trainer_trains_an_mlp_on_digits(steps: int) -> None:
    training = 'dataset = "digits"\nmodel = "mlp"\nrounds = 40\nlearning_rate = 0.01\n'
    training += f"local_steps = {steps}\n[training.model_options]\nhidden_layers = [16]"
    trainer = ReferenceTrainer(config(training))  # type: ignore[arg-type]
    state = trainer.run()
    assert state.accuracy(trainer.split.test) > 0.85


def test_a_saved_model_predicts_from_raw_features_for_every_built_in_model(tmp_path: Path) -> None:
    for spec in ["logreg", "mlp", "examples.poly_softmax:build"]:
        trainer = ReferenceTrainer(config(f'dataset = "wine"\nmodel = "{spec}"\nrounds = 30'))  # type: ignore[arg-type]
        state = trainer.run()
        state.save(tmp_path / "model.npz")
        saved = load_model(tmp_path / "model.npz")
        test = trainer.split.test
        assert test is not None
        expected = state.model.predict(state.theta, (test.x - state.mean) / state.scale)
        assert list(saved.predict(test.x)) == list(expected)  # a bundled data set's labels, 0 .. k-1


def test_examples_folder_is_importable_from_the_project() -> None:
    assert str(ROOT) in sys.path or Path.cwd() == ROOT
