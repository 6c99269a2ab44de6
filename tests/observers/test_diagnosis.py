"""The diagnosis: each flag at its documented threshold, the depth ratio, the advice, the files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from observers import diagnosis as dg
from observers.activation_data import ActivationData

ROWS = 8  # late training: the last 2 rows


def make(
    stds: list[list[float]],
    means: list[list[float]] | None = None,
    near_zero: list[list[float]] | None = None,
    top: float = 0.3,
    outside: float = 0.0,
    train: list[bool] | None = None,
) -> ActivationData:
    """Rows x layers of statistics; each histogram puts ``top`` of the values in bin 0."""
    s = torch.tensor(stds, dtype=torch.float64)
    rows, layers = s.shape
    numel = torch.full((rows, layers), 1000.0, dtype=torch.float64)
    hists = torch.zeros(rows, layers, 4)
    hists[..., 0] = 1000.0 * top
    hists[..., 1] = 1000.0 * (1 - top - outside)
    zeros = torch.zeros(rows, layers, dtype=torch.float64)
    return ActivationData(
        "activations",
        [f"l{i}" for i in range(layers)],
        ["Sequential"] * layers,
        4,
        [(0.0, 10.0)] * layers,
        [[0, 1]] * layers,
        list(range(rows)),
        [0] * rows,
        train or [True] * rows,
        numel,
        zeros + 0.1 if means is None else torch.tensor(means, dtype=torch.float64),
        s,
        hists,
        zeros + 0.2 if near_zero is None else torch.tensor(near_zero, dtype=torch.float64),
        zeros + outside,
    )


def healthy(layers: int = 2) -> list[list[float]]:
    return [[1.0] * layers for _ in range(ROWS)]


def test_a_healthy_record_has_no_problem_and_says_so() -> None:
    result = dg.diagnose(make(healthy()))
    assert [layer.flags for layer in result.layers] == [[], []]
    assert result.depth_ratio == 1.0
    assert result.advice == [dg.ADVICE["ok"]]
    assert result.rows == ROWS and result.problems == {}


def test_dead_counts_only_late_training_and_asks_for_general_relu() -> None:
    early_dead = [[0.99, 0.2]] * 6 + [[0.2, 0.2]] * 2
    late_dead = [[0.2, 0.2]] * 6 + [[0.2, 0.7], [0.2, 0.9]]  # late mean 0.8 > DEAD
    assert dg.diagnose(make(healthy(), near_zero=early_dead)).problems == {}
    result = dg.diagnose(make(healthy(), near_zero=late_dead))
    assert result.problems == {"dead": ["l1"]}
    assert result.layers[1].near_zero == pytest.approx(0.8)
    assert result.advice == [dg.ADVICE["relu"]]


def test_validation_rows_are_left_out() -> None:
    near = [[0.2]] * 6 + [[0.9], [0.9]]
    data = make([[1.0]] * ROWS, near_zero=near, train=[True] * 6 + [False, False])
    result = dg.diagnose(data)
    assert result.rows == 6 and result.problems == {}


def test_explode_and_crash_asks_for_init_and_batchnorm() -> None:
    stds = [[1.0, 1.0], [1.0, 30.0], [1.0, 2.0]] + [[1.0, 2.0]] * 5  # fell from 30 to 2
    result = dg.diagnose(make(stds))
    assert result.problems == {"crashed": ["l1"]}
    assert result.layers[1].peak_std == 30.0 and result.layers[1].drop == 15.0
    assert result.advice == [dg.ADVICE["init"], dg.ADVICE["norm"]]
    with_bn = dg.diagnose(make(stds), layer_types={"BatchNorm2d"})
    assert with_bn.advice == [dg.ADVICE["init"]]


def test_a_crash_counts_wherever_it_happens_and_a_rise_is_no_crash() -> None:
    recovered = [[1.0], [1.0], [8.0], [1.0], [8.0], [8.0], [8.0], [8.0]]  # fell 8x, rose again
    assert dg.diagnose(make(recovered)).layers[0].drop == 8.0
    assert dg.diagnose(make(recovered)).problems == {"crashed": ["l0"]}
    rising = [[0.01 * 2**i] for i in range(ROWS)]
    assert dg.diagnose(make(rising)).layers[0].drop == 1.0
    first_row_ignored = [[100.0]] + [[1.0]] * 7
    assert dg.diagnose(make(first_row_ignored)).problems == {}


def test_fading_with_depth_at_the_start_asks_for_init() -> None:
    """torch's default init: deeper layers start tiny, then catch up."""
    stds = [[0.3, 0.1, 0.02]] * 10 + [[0.5, 0.5, 0.5]] * 10
    result = dg.diagnose(make(stds))
    assert result.start_ratio == pytest.approx(0.02 / 0.3)
    assert result.depth_ratio == pytest.approx(1.0)
    assert result.problems == {"grows over time": ["l2"], "fades with depth": ["l2"]}
    assert result.advice == [dg.ADVICE["init"], dg.ADVICE["norm"]]


def test_growing_with_depth_and_over_time_are_flagged_per_layer() -> None:
    grows = dg.diagnose(make([[1.0, 5.0, 10.1]] * ROWS))
    assert grows.problems == {"grows with depth": ["l2"]}
    at_ratio = dg.diagnose(make([[1.0, 10.0]] * ROWS))
    assert at_ratio.problems == {}
    over_time = [[0.1]] * 10 + [[1.1]] * 14  # late 1.1 over a start of 0.1
    assert dg.diagnose(make(over_time)).problems == {"grows over time": ["l0"]}


def test_a_faded_layer_is_not_called_dead() -> None:
    near = [[0.2, 0.99]] * ROWS
    result = dg.diagnose(make([[1.0, 0.05]] * ROWS, near_zero=near))
    assert result.problems == {"fades with depth": ["l1"]}


def test_a_non_finite_row_at_any_time_is_nan() -> None:
    stds = [[1.0], [math.nan]] + [[1.0]] * 6
    assert dg.diagnose(make(stds)).problems == {"nan": ["l0"]}


def saturated_data(share: float, kind: str = "Tanh") -> ActivationData:
    """One tanh layer over -7..7 in 40 bins: ``share`` of the values in the bins near +-1."""
    data = make(healthy(1))
    data.types, data.ranges, data.zero_bins = [kind], [(-7.0, 7.0)], [[19, 20]]
    hists = torch.zeros(ROWS, 1, 40)
    hists[..., 17] = 1000 * share / 2  # [-1.05, -0.7)
    hists[..., 22] = 1000 * share / 2  # [0.7, 1.05)
    hists[..., 20] = 1000 * (1 - share)  # [0, 0.35)
    data.hists, data.bins = hists, 40
    return data


def test_a_bounded_activation_near_its_bounds_is_saturated() -> None:
    result = dg.diagnose(saturated_data(dg.SATURATED + 0.01))
    assert result.problems == {"saturated": ["l0"]}
    assert result.layers[0].at_bounds == pytest.approx(dg.SATURATED + 0.01)
    assert result.advice == [dg.ADVICE["saturated"]]
    assert dg.diagnose(saturated_data(dg.SATURATED)).problems == {}
    assert dg.diagnose(saturated_data(0.9, "ReLU")).problems == {}  # unbounded


@pytest.mark.parametrize(
    ("std", "flag"),
    [(dg.EXPLODING * 1.01, "exploding"), (dg.VANISHING * 0.99, "vanishing"), (math.inf, "nan")],
)
def test_spread_flags_at_their_thresholds(std: float, flag: str) -> None:
    result = dg.diagnose(make([[1.0, std]] * ROWS))
    depth = {"exploding": "grows with depth", "vanishing": "fades with depth"}
    assert result.problems == {flag: ["l1"], **({depth[flag]: ["l1"]} if flag in depth else {})}
    assert dg.ADVICE["init"] in result.advice


def test_at_the_thresholds_nothing_is_flagged() -> None:
    near = [[dg.DEAD, dg.DEAD]] * ROWS
    stds = [[dg.EXPLODING, dg.VANISHING]] * ROWS
    result = dg.diagnose(make(stds, near_zero=near, top=dg.COLLAPSED, outside=0.0))
    assert result.problems == {"fades with depth": ["l1"]}  # the ratio, not the thresholds


def test_collapsed_and_out_of_range() -> None:
    collapsed = dg.diagnose(make(healthy(1), top=0.99))
    assert collapsed.problems == {"collapsed": ["l0"]}
    assert collapsed.layers[0].top_bin == pytest.approx(0.99)
    assert collapsed.advice == [dg.ADVICE["relu"]]
    outside = dg.diagnose(make(healthy(1), top=0.1, outside=0.6))
    assert outside.problems == {"out of range": ["l0"]}
    assert outside.advice == [dg.ADVICE["range"]]


def test_depth_ratio_is_last_over_first_late_std() -> None:
    grows = dg.diagnose(make([[0.5, 1.0, 6.0]] * ROWS))
    assert grows.depth_ratio == pytest.approx(12.0)
    assert grows.problems == {"grows with depth": ["l2"]}
    assert grows.advice == [dg.ADVICE["init"], dg.ADVICE["norm"]]
    assert dg.diagnose(make([[1.0, 9.0]] * ROWS)).advice == [dg.ADVICE["ok"]]


def test_small_batch_with_batchnorm_asks_for_running_batchnorm() -> None:
    data = make(healthy())
    assert dg.diagnose(data, batch_size=2, layer_types={"BatchNorm2d"}).advice == [
        dg.ADVICE["small"]
    ]
    assert dg.diagnose(data, batch_size=2, layer_types={"RunningBatchNorm"}).advice == [
        dg.ADVICE["ok"]
    ]
    assert dg.diagnose(data, batch_size=64, layer_types={"BatchNorm2d"}).advice == [dg.ADVICE["ok"]]


def test_table_and_markdown(tmp_path: Path) -> None:
    result = dg.diagnose(make(healthy(1)), batch_size=16)
    lines = result.table().splitlines()
    assert lines[0] == "Diagnosis of the activations (last 25% of 8 rows)"
    assert lines[1].split() == [
        "layer",
        "mean",
        "std",
        "start",
        "std",
        "peak",
        "std",
        "drop",
        "near",
        "0",
        "at",
        "bounds",
        "top",
        "bin",
        "outside",
        "problems",
    ]
    row = ["l0", "(Sequential)", "0.1", "1", "1", "1", "1", "20.0%", "-", "70.0%", "0.0%", "ok"]
    assert lines[2].split() == row
    assert lines[3] == ("std last/first layer: nan late, nan over the first 10 rows; batch size 16")
    assert str(result) == result.table()
    path = result.save(tmp_path / "sub" / "diagnosis.md")
    text = path.read_text()
    assert text.startswith("# Diagnosis of the activations\n")
    assert "| l0 (Sequential) | 0.1 | 1 | 1 | 1 | 1 | 20.0% | - | 70.0% | 0.0% | ok |" in text
    assert [p.name for p in path.parent.iterdir()] == ["diagnosis.md"]


def test_signed_layers_such_as_logits_are_never_dead() -> None:
    """Near zero means dead ReLUs only for outputs that are never negative."""
    from engine.data import DataBunch
    from engine.learner import Learner
    from observers.activation_stats import ActivationStats

    torch.manual_seed(0)
    x = torch.randn(64, 20)
    y = torch.randint(0, 2, (64,))
    model = torch.nn.Sequential(torch.nn.Linear(20, 2))
    with torch.no_grad():
        model[0].weight.mul_(0.01)  # tiny logits around 0, of both signs: nearly all near zero
        model[0].bias.zero_()
    stats = ActivationStats(report=False, save=False)
    Learner(
        model, DataBunch.from_tensors(x, y, bs=16), lr=0.0, plugins=[stats], defaults=False
    ).fit(1)
    assert stats.data is not None
    report = dg.diagnose(stats.data)
    assert report.layers[0].near_zero > 0.75
    assert "dead" not in report.layers[0].flags
