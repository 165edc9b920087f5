"""Whether a data owner's data can ever be contributed (asyncmpc.learning.bounds; no I/O but
the CSV files the tests write, no MPC)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import Config, load_config, parse_config
from asyncmpc.crypto.ring import encode, max_abs_value
from asyncmpc.errors import ConfigError, EncodingError
from asyncmpc.learning.bounds import check_statistics, feature_misfit
from asyncmpc.learning.data import load_csv, load_split
from asyncmpc.learning.training import stats_of
from tests.helpers import hosts_toml

BREAST_CANCER = 'dataset = "breast_cancer"'
PRIVACY = "\n[privacy]\nnoise_multiplier = 1.0\nsampling_rate = 0.5"


def config(
    training: str = 'dataset = "breast_cancer"', protocol: str = "", extra: dict[str, str] | None = None
) -> Config:
    return parse_config(hosts_toml(3, training=training, protocol=protocol, extra=extra), "test.toml")


@pytest.mark.parametrize("dataset", ["breast_cancer", "digits", "wine", "iris"])
def test_every_owner_of_every_bundled_data_set_passes_unscaled_with_the_defaults(dataset: str) -> None:
    c = config(f'dataset = "{dataset}"')
    for player, data in zip(c.data_owners, load_split(c).owners, strict=True):
        check_statistics(c, player, data.x)


@pytest.mark.parametrize("scale", [1.0, 4e3, 1e5, 3e5, 1e6, 1e154, 1e300])
def test_it_refuses_exactly_the_data_whose_statistics_the_ring_cannot_encode(scale: float) -> None:
    c = config()
    x = np.random.default_rng(7).normal(0.0, scale, (1000, 5))
    try:
        encode(stats_of(x), c.protocol.frac_bits, max_terms=c.input_terms)
        encodes = True
    except EncodingError:
        encodes = False
    try:
        check_statistics(c, c.data_owners[0], x)
        refused = False
    except ConfigError:
        refused = True
    assert refused == (not encodes)


def test_the_bound_is_on_the_sum_of_squares_and_the_message_says_what_fits() -> None:
    c = config()
    bound = max_abs_value(16, 1000)
    at = math.sqrt(bound / 100)  # 100 values of this size square and sum to the bound
    check_statistics(c, c.data_owners[0], np.full((100, 2), at * (1 - 1e-9)))
    with pytest.raises(ConfigError) as caught:
        check_statistics(c, c.data_owners[0], np.full((100, 2), at * (1 + 1e-9)))
    assert str(caught.value).startswith(
        "[training] dataset 'breast_cancer' (data-owner-0's examples): example 0, feature 0: too large"
    )
    assert f"within {bound:.3g} with [protocol] frac_bits = 16 and max_owners = 1000" in str(caught.value)
    assert f"(values up to {at:.3g} in magnitude fit)" in str(caught.value)
    # fewer owners to sum over, or fewer fractional bits, make room
    check_statistics(config(protocol="max_owners = 10"), c.data_owners[0], np.full((100, 2), at * 2))
    check_statistics(config(protocol="frac_bits = 12"), c.data_owners[0], np.full((100, 2), at * 2))


def test_a_bundled_data_set_is_refused_when_frac_bits_leaves_no_room_for_its_statistics() -> None:
    c = config(protocol="frac_bits = 36")
    data = load_split(c).owners[0]
    with pytest.raises(ConfigError) as caught:
        check_statistics(c, c.data_owners[0], data.x)
    # it names the first column whose squares sum beyond the bound, at its largest value
    col = int(np.flatnonzero((data.x**2).sum(axis=0) > max_abs_value(36, 1000))[0])
    row = int(np.argmax(np.abs(data.x[:, col])))
    assert str(caught.value).startswith(
        f"[training] dataset 'breast_cancer' (data-owner-0's examples): example {row}, feature {col}: too large"
    )


def test_under_privacy_there_is_no_statistics_round_to_check() -> None:
    c = config(BREAST_CANCER + PRIVACY)
    check_statistics(c, c.data_owners[0], np.full((10, 2), 1e300))


def test_a_csv_names_the_line_and_the_column_whatever_the_label_columns_place(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text("a,kind,b,c\n1,x,2,3\n\n1,y,2,1e200\n1,x,5,3\n")
    extra = {f"data-owner-{i}": f'csv = "o{i}.csv"' for i in range(3)}
    extra["data-owner-0"] = 'csv = "o.csv"\nlabel_column = "kind"'
    training = 'dataset = "csv"\nclasses = ["x", "y"]'
    path = tmp_path / "hosts.toml"
    path.write_text(hosts_toml(3, training=training, extra=extra))
    c = load_config(path)
    player = c.player("data-owner-0")
    assert player.csv is not None
    data = load_csv(player.csv, "kind", ("x", "y"))
    with pytest.raises(ConfigError) as caught:
        check_statistics(c, player, data.x)
    assert str(caught.value).startswith(f"{player.csv}: line 4, column 'c': too large for the fixed-point ring")
    assert "1e200" not in str(caught.value) and "1e+200" not in str(caught.value)


def test_a_feature_misfit_names_the_file_the_plug_in_or_the_data_set() -> None:
    extra = {f"data-owner-{i}": f'csv = "o{i}.csv"' for i in range(3)}
    csv = config('dataset = "csv"\nclasses = ["x", "y"]', extra=extra)
    assert feature_misfit(csv, csv.player("data-owner-0"), 29, 30) == (
        f"{csv.player('data-owner-0').csv}: 29 feature columns besides 'label', but the model owner's model takes "
        "30 (as many as its test file has): is this the file meant for this deployment?"
    )
    plugin = config('dataset = "examples.wine_owners:load"\nclasses = ["0", "1", "2"]')
    assert feature_misfit(plugin, plugin.data_owners[1], 12, 13) == (
        "data plug-in 'examples.wine_owners:load' gave data-owner-1 12 features, but the model owner's model takes 13"
    )
