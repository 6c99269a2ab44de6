"""The activation pictures draw exactly the recorded numbers, headless, and save PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from observers import activation_plots as ap
from observers.activation_data import ActivationBuffer
from observers.activation_data import ActivationData


@pytest.fixture
def data() -> ActivationData:
    """Two layers, 12 rows (the 6th a validation row), values growing row by row."""
    buf = ActivationBuffer("activations", ["conv", "head"], ["Conv2d", "Linear"], 12, sample=0)
    gen = torch.Generator().manual_seed(0)
    for row in range(12):
        buf.record(0, row, torch.rand(4, 3, 5, 5, generator=gen) * (row + 1))
        buf.record(1, row, torch.randn(4, 10, generator=gen) * (row + 1))
    train = [row != 5 for row in range(12)]
    iterations = [2 * row for row in range(12)]
    return buf.to_host(12, iterations, [row // 6 for row in range(12)], train)


def ydata(ax: Axes) -> list[list[float]]:
    return [list(map(float, line.get_ydata())) for line in ax.get_lines()]  # type: ignore[arg-type]


def test_means_and_stds_are_the_training_rows_per_layer(data: ActivationData) -> None:
    train = data.training()
    ax = ap.plot_means(data)
    assert isinstance(ax, Axes)
    assert ydata(ax) == [train.means[:, 0].tolist(), train.means[:, 1].tolist()]
    assert list(ax.get_lines()[0].get_xdata()) == train.iterations  # type: ignore[arg-type]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [  # type: ignore[union-attr]
        "conv (Conv2d)",
        "head (Linear)",
    ]
    stds = ap.plot_stds(data, first=3, layers=["head"])
    assert ydata(stds) == [train.stds[:3, 1].tolist()]


def test_draws_on_the_given_axes(data: ActivationData) -> None:
    figure = Figure()
    ax = figure.add_subplot()
    assert ap.plot_near_zero(data, ax) is ax
    assert ax.get_ylim() == (0.0, 1.0)
    assert ydata(ax)[1] == data.training().near_zero[:, 1].tolist()


def test_color_dim_is_log_counts_bins_up_batches_across(data: ActivationData) -> None:
    ax = ap.plot_color_dim(data, "head")
    (image,) = ax.get_images()
    train = data.training()
    expected = np.log1p(train.hists[:, 1].double().numpy()).T  # equal sizes: no scaling
    np.testing.assert_allclose(image.get_array(), expected)
    assert image.origin == "lower"
    assert image.get_extent() == [-0.5, 22.5, -7.0, 7.0]
    assert ax.get_title() == "head (Linear)"


def test_color_dim_scales_a_smaller_batch_to_the_largest() -> None:
    buf = ActivationBuffer("activations", ["a"], ["ReLU"], 2, sample=0)
    buf.record(0, 0, torch.full((4, 5), 0.1))
    buf.record(0, 1, torch.full((2, 5), 0.1))  # a last batch of half the size
    data = buf.to_host(2, [0, 1], [0, 0], [True, True])
    (image,) = ap.plot_color_dim(data).get_images()
    np.testing.assert_allclose(image.get_array()[0], [math.log1p(20.0)] * 2)


def test_grids_have_one_panel_per_layer(data: ActivationData) -> None:
    grid = ap.color_dim_figure(data, ncols=3)
    assert isinstance(grid, Figure)
    drawn = [ax for ax in grid.axes if ax.get_images()]
    bars = [ax for ax in grid.axes if ax.get_label() == "<colorbar>"]
    assert len(grid.axes) == 5 and len(drawn) == 2 and not grid.axes[2].axison
    assert [ax.get_ylabel() for ax in bars] == ["log(1 + count)"] * 2
    both = ap.means_stds_figure(data, first=4)
    assert [len(ydata(ax)[0]) for ax in both.axes] == [4, 4]


def test_bad_arguments_say_what_is_expected(data: ActivationData) -> None:
    with pytest.raises(ValueError, match="no recorded module 'fc'"):
        ap.plot_color_dim(data, "fc")
    with pytest.raises(ValueError, match="first should be a positive integer, got 0"):
        ap.plot_means(data, first=0)
    with pytest.raises(ValueError, match="ncols should be a positive integer"):
        ap.color_dim_figure(data, ncols=0)


def test_empty_data_gives_empty_axes() -> None:
    buf = ActivationBuffer("activations", ["a"], ["ReLU"], 2)
    empty = buf.to_host(0, [], [], [])
    assert ap.plot_means(empty).get_lines() == []
    assert ap.plot_color_dim(empty).get_images() == []


def test_save_writes_the_pngs_atomically(data: ActivationData, tmp_path: Path) -> None:
    written = ap.save_activation_plots(data, tmp_path / "acts", prefix="grad_")
    assert [p.name for p in written] == [f"grad_{name}" for name in ap.PLOT_FILES]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "acts").iterdir()) == sorted(
        p.name for p in written
    )  # no temporary file left behind


def test_epochs_are_marked_where_they_begin(data: ActivationData) -> None:
    train = data.training()
    assert ap.epoch_starts(train) == [12]  # rows 6.. are epoch 1, taken at batch 12
    ax = ap.plot_stds(data)
    (marks,) = ax.collections
    assert [float(seg[0][0]) for seg in marks.get_segments()] == [11.5]
    assert ap.epoch_starts(train, rows=4) == []
    assert len(ap.plot_means(data, first=4).collections) == 0


def test_near_zero_band_is_drawn_and_stated(data: ActivationData) -> None:
    # conv is never negative: range 0..10, 40 bins, the 2 nearest 0 are [0, 0.5)
    assert ap.near_zero_band(data, 0) == (0.0, 0.5)
    # head is signed: -7..7, the 2 bins around 0 are [-0.35, 0.35)
    low, high = ap.near_zero_band(data, 1)
    assert (low, high) == pytest.approx((-0.35, 0.35))
    ax = ap.plot_color_dim(data, "conv")
    band = [c for c in ax.collections if c.get_label() == "_near zero"]
    assert [float(s[0][1]) for s in band[0].get_segments()] == [0.0, 0.5]
    assert ap.plot_near_zero(data, layers=["conv"]).get_title() == "near zero: values in [0, 0.5)"
    assert "band per layer" in ap.plot_near_zero(data).get_title()


def test_color_dim_range_is_cut_to_the_bins_used(data: ActivationData) -> None:
    full = ap.plot_color_dim(data, "conv")  # values reach past 10: nothing to cut
    assert full.get_ylim() == (0.0, 10.0) and list(full.texts) == []
    buf = ActivationBuffer("activations", ["relu"], ["ReLU"], 3, sample=0)
    for row in range(3):  # values in [0, 1.9): bins 0..7 of 0..10's 40
        buf.record(0, row, torch.linspace(0.0, 1.9, 100))
    small = buf.to_host(3, [0, 1, 2], [0, 0, 0], [True] * 3)
    ax = ap.plot_color_dim(small)
    assert ax.get_ylim() == pytest.approx((0.0, 9 * 0.25))  # bins 0..7 and one more
    assert [text.get_text() for text in ax.texts] == ["range 0..10, empty bins not shown"]
    (image,) = ax.get_images()
    assert image.get_extent() == [-0.5, 2.5, 0.0, 10.0]  # the whole histogram is kept


def test_compare_figure_puts_runs_side_by_side(data: ActivationData) -> None:
    figure = ap.compare_figure({"plain": data, "kaiming": data, "GeneralRelu": data}, "head")
    tops = [ax for ax in figure.axes if ax.get_title() in ("plain", "kaiming", "GeneralRelu")]
    assert [ax.get_title() for ax in tops] == ["plain", "kaiming", "GeneralRelu"]
    assert all(ax.get_yscale() == "log" for ax in tops)
    images = [ax for ax in figure.axes if ax.get_images()]
    assert [ax.get_title() for ax in images] == ["head (Linear)"] * 3
    assert sum(ax.get_label() == "<colorbar>" for ax in figure.axes) == 1
    with pytest.raises(ValueError, match="at least one run"):
        ap.compare_figure({})
