"""ActivationBuffer and ActivationData: sums, histograms, samples and ranges against torch."""

from __future__ import annotations

import math

import pytest
import torch

from observers.activation_data import RELU_RANGE
from observers.activation_data import SIGNED_RANGE
from observers.activation_data import ActivationBuffer
from observers.activation_data import sample_stride
from observers.activation_data import zero_bins


def buffer(modules: int = 1, capacity: int = 4, **kwargs: object) -> ActivationBuffer:
    names = [str(i) for i in range(modules)]
    return ActivationBuffer("activations", names, ["X"] * modules, capacity, **kwargs)  # type: ignore[arg-type]


def host(buf: ActivationBuffer, rows: int, near_zero_bins: int = 2):  # type: ignore[no-untyped-def]
    return buf.to_host(rows, list(range(rows)), [0] * rows, [True] * rows, near_zero_bins)


def test_zero_bins_are_the_bins_closest_to_zero() -> None:
    assert zero_bins(0.0, 10.0, 40, 2) == [0, 1]  # the lesson's [0, 0.5)
    assert zero_bins(-7.0, 7.0, 40, 2) == [19, 20]  # [-0.35, 0.35)
    assert zero_bins(-7.0, 7.0, 40, 3) == [18, 19, 20]
    assert zero_bins(1.0, 3.0, 4, 1) == [0]  # 0 below the range: the lowest bin
    assert zero_bins(-3.0, -1.0, 4, 2) == [2, 3]


@pytest.mark.parametrize(
    ("numel", "item", "sample"),
    [(802_816, 1568, 16384), (401_408, 784, 16384), (131_072, 2048, 4096), (5000, 49, 1000)],
)
def test_sample_stride_is_a_prime_coprime_with_one_item(numel: int, item: int, sample: int) -> None:
    step = sample_stride(numel, item, sample)
    assert step >= 2 and all(step % d for d in range(2, step))
    assert item % step != 0
    assert math.ceil(numel / step) <= sample
    assert sample_stride(numel, item, 0) == 1 and sample_stride(sample, item, sample) == 1


def test_exact_statistics_match_torch_when_nothing_is_sampled() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 5, generator=gen) * 2.0 + 0.5
    buf = buffer(sample=0, fixed_range=(-4.0, 4.0), bins=16)
    buf.record(0, 0, x)
    data = host(buf, 1)
    assert data.means[0, 0].item() == pytest.approx(x.double().mean().item(), rel=1e-6)
    assert data.stds[0, 0].item() == pytest.approx(x.double().std().item(), rel=1e-6)
    expected = torch.histc(x, 16, -4.0, 4.0)
    torch.testing.assert_close(data.hists[0, 0], expected, rtol=0, atol=0)
    inside = float(expected.sum())
    assert data.out_of_range[0, 0].item() == pytest.approx(1 - inside / x.numel())
    near = float(expected[7:9].sum()) / x.numel()  # bins [-0.5, 0) and [0, 0.5)
    assert data.near_zero[0, 0].item() == pytest.approx(near)
    assert data.numel[0, 0].item() == x.numel()


def test_std_of_shifted_values_keeps_float32_precision() -> None:
    """Sums of float32 values lose precision as (mean/std)^2 grows; at 10 it is still 1e-4."""
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(1)) + 10.0
    buf = buffer(sample=0, fixed_range=(0.0, 20.0))
    buf.record(0, 0, x.view(1000, 100))
    data = host(buf, 1)
    assert data.stds[0, 0].item() == pytest.approx(x.double().std().item(), rel=1e-4)


def test_sampled_histogram_is_within_the_documented_error_of_histc() -> None:
    """Values vary by column: a stride dividing the row would see one column only."""
    n, c, h, w = 64, 8, 16, 16
    columns = torch.arange(w, dtype=torch.float32) * 0.5
    x = (columns.expand(n, c, h, w) + torch.rand(n, c, h, w) * 0.4).contiguous()
    buf = buffer(sample=4096, fixed_range=RELU_RANGE, bins=40)
    buf.record(0, 0, x)
    data = host(buf, 1)
    true_share = torch.histc(x, 40, *RELU_RANGE) / x.numel()
    got_share = data.hists[0, 0] / x.numel()
    bound = 4 * 0.5 / math.sqrt(4096)  # four standard errors at the worst p
    assert (got_share - true_share).abs().max().item() <= bound
    naive = torch.histc(x.reshape(-1)[::32], 40, *RELU_RANGE) / (x.numel() // 32)
    assert (naive - true_share).abs().max().item() > 0.5  # why the stride avoids 32


def test_automatic_range_follows_the_sign_of_the_first_output() -> None:
    buf = buffer(modules=2)
    buf.record(0, 0, torch.rand(4, 5))
    buf.record(1, 0, torch.rand(4, 5) - 0.5)
    buf.record(0, 1, torch.rand(4, 5) - 0.5)  # later outputs do not change the range
    assert buf.ranges == [RELU_RANGE, SIGNED_RANGE]


def test_gradient_range_spans_four_stds_of_the_first_gradient() -> None:
    g = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)) * 1e-3
    buf = ActivationBuffer("gradients", ["0"], ["X"], 2)
    buf.record(0, 0, g)
    low, high = buf.ranges[0]  # type: ignore[misc]
    assert high == pytest.approx(4 * g.std().item()) and low == -high
    fixed = ActivationBuffer("gradients", ["0"], ["X"], 2, grad_range=0.5)
    fixed.record(0, 0, g)
    assert fixed.ranges[0] == (-0.5, 0.5)


def test_rows_without_a_record_are_nan_and_other_types_are_ignored() -> None:
    buf = buffer(modules=2)
    buf.record(0, 0, torch.ones(2, 2))
    buf.record(1, 0, torch.ones(2, 2, dtype=torch.long))  # not floating point
    buf.record(1, 0, (torch.ones(2),))  # not a tensor
    data = host(buf, 2)
    assert data.means[0, 0].item() == 1.0
    assert math.isnan(data.means[0, 1].item()) and math.isnan(data.means[1, 0].item())


def test_half_precision_outputs_are_recorded_in_float32() -> None:
    x = torch.linspace(0, 4, 64).view(8, 8)
    buf = buffer(sample=0)
    buf.record(0, 0, x.half())
    assert host(buf, 1).means[0, 0].item() == pytest.approx(2.0, abs=1e-3)


def test_halve_keeps_even_rows_at_the_front_and_clears_the_rest() -> None:
    buf = buffer(capacity=5, sample=0)
    for row in range(5):
        buf.record(0, row, torch.full((2, 3), float(row)))
    assert buf.halve(5) == 3
    data = host(buf, 5)
    assert data.means[:, 0].tolist()[:3] == [0.0, 2.0, 4.0]
    assert all(math.isnan(v) for v in data.means[3:, 0].tolist())


def test_select_and_training_keep_rows_consistently() -> None:
    buf = buffer(sample=0)
    for row in range(3):
        buf.record(0, row, torch.full((1, 2), float(row)))
    data = buf.to_host(3, [0, 0, 1], [0, 0, 0], [True, False, True])
    train = data.training()
    assert train.iterations == [0, 1] and train.means[:, 0].tolist() == [0.0, 2.0]
    assert data.index("0") == 0 and data.index(-1) == 0
    with pytest.raises(ValueError, match="no recorded module 'x'"):
        data.index("x")
    torch.testing.assert_close(data.edges(0), torch.linspace(0, 10, 41, dtype=torch.float64))
