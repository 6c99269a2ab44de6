"""GeneralRelu and the normalization layers, each against torch's or a reference."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.nn import BatchNorm
from engine.nn import GeneralRelu
from engine.nn import InstanceNorm
from engine.nn import LayerNorm
from engine.nn import RunningBatchNorm
from engine.nn import group_norm
from tests.outcomes import RUNNING_BATCHNORM_BEATS_BATCHNORM_AT_BS2
from tests.outcomes import RUNNING_BATCHNORM_TRAINS_AT_BS2


def _batches(*sizes: int, nf: int = 3, side: int = 4) -> list[torch.Tensor]:
    """Batches with per-channel offsets and scales, so that statistics differ."""
    gen = torch.Generator().manual_seed(0)
    offset = torch.tensor([1.0, -2.0, 0.5][:nf] + [0.0] * max(0, nf - 3)).view(1, nf, 1, 1)
    return [
        torch.randn(bs, nf, side, side, generator=gen, dtype=torch.float64) * (1 + i) + offset
        for i, bs in enumerate(sizes)
    ]


# GeneralRelu


def test_general_relu_matches_closed_form() -> None:
    x = torch.linspace(-10, 10, 101)
    expected = torch.where(x > 0, x, 0.1 * x) - 0.4
    expected = torch.minimum(expected, torch.tensor(6.0))
    assert torch.equal(GeneralRelu(leak=0.1, sub=0.4, maxv=6)(x), expected)
    assert GeneralRelu(0.1, 0.4, 6)(torch.tensor([100.0, -1.0])).tolist() == pytest.approx(
        [6.0, -0.5]
    )


def test_general_relu_defaults_to_relu() -> None:
    x = torch.randn(50)
    assert torch.equal(GeneralRelu()(x), F.relu(x))
    assert torch.equal(GeneralRelu(leak=0.2)(x), F.leaky_relu(x, 0.2))
    assert torch.equal(GeneralRelu(maxv=0.5)(x), F.relu(x).clamp_max(0.5))
    assert repr(GeneralRelu(0.1, 0.4, 6)) == "GeneralRelu(leak=0.1, sub=0.4, maxv=6)"


def test_general_relu_rejects_non_numbers() -> None:
    with pytest.raises(TypeError, match="GeneralRelu: sub should be a number or None"):
        GeneralRelu(sub="0.4")  # type: ignore[arg-type]


# BatchNorm


def test_batchnorm_matches_torch_in_train_and_eval() -> None:
    """Outputs, running statistics, gradients and eval outputs all match nn.BatchNorm2d."""
    ours = BatchNorm(3, mom=0.2).double()
    ref = nn.BatchNorm2d(3, momentum=0.2).double()
    for x in _batches(4, 2, 7, 3):
        x1 = x.clone().requires_grad_()
        x2 = x.clone().requires_grad_()
        out1, out2 = ours(x1), ref(x2)
        torch.testing.assert_close(out1, out2, atol=1e-5, rtol=0)
        (out1 * x).sum().backward()
        (out2 * x).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-5, rtol=0)
    assert ours.mult.grad is not None and ours.add.grad is not None
    torch.testing.assert_close(ours.mult.grad, ref.weight.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.add.grad, ref.bias.grad, atol=1e-5, rtol=0)
    ours.eval()
    ref.eval()
    x = _batches(5)[0] * 3
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_batchnorm_float32_within_1e5() -> None:
    ours, ref = BatchNorm(3), nn.BatchNorm2d(3)
    for x in _batches(16, 16, 16):
        x = x.float()
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-5, rtol=0)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_batchnorm_momentum_is_the_weight_of_the_new_value() -> None:
    """One step from (0, 1): running = 0.1 * batch + 0.9 * initial, unbiased variance."""
    layer = BatchNorm(3).double()
    x = _batches(4)[0]
    layer(x)
    mean = x.mean((0, 2, 3))
    n = x.numel() // 3
    var = x.var((0, 2, 3), unbiased=False) * n / (n - 1)
    torch.testing.assert_close(layer.running_mean, 0.1 * mean)
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * var)


def test_batchnorm_needs_two_values_per_channel() -> None:
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm(3)(torch.randn(1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"expects a batch \(N, 3, \.\.\.\)"):
        BatchNorm(3)(torch.randn(2, 4, 5, 5))
    assert BatchNorm(3).eval()(torch.randn(1, 3, 1, 1)).shape == (1, 3, 1, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nf": 0}, "nf"),
        ({"nf": 3, "mom": 0.0}, "mom"),
        ({"nf": 3, "mom": 1.5}, "mom"),
        ({"nf": 3, "eps": -1.0}, "eps"),
    ],
)
def test_batchnorm_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"BatchNorm: {message}"):
        BatchNorm(**kwargs)  # type: ignore[arg-type]


# LayerNorm, InstanceNorm, GroupNorm


def test_layernorm_matches_torch() -> None:
    x = _batches(4)[0]
    layer = LayerNorm().double()
    torch.testing.assert_close(layer(x), F.layer_norm(x, x.shape[1:], eps=1e-5))
    torch.testing.assert_close(layer(x), nn.GroupNorm(1, 3).double()(x))
    with torch.no_grad():
        layer.mult.fill_(2.0)
        layer.add.fill_(-0.5)
    expected = F.layer_norm(x, x.shape[1:], eps=1e-5) * 2 - 0.5
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.eval()(x), expected)


def test_layernorm_divides_by_the_variance_not_the_std() -> None:
    """The lesson's erratum: with sqrt(std + eps) the output std would be about 2**0.5 here."""
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = LayerNorm(eps=1e-12)(x * 4.0)
    assert out.std(dim=(1, 2, 3), unbiased=False).tolist() == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("eps", [1e-5, 1.0])
def test_instancenorm_matches_torch(eps: float) -> None:
    x = _batches(3)[0]
    layer = InstanceNorm(3, eps=eps).double()
    torch.testing.assert_close(layer(x), F.instance_norm(x, eps=eps))
    torch.testing.assert_close(layer(x), nn.GroupNorm(3, 3, eps=eps).double()(x))
    with torch.no_grad():
        layer.mult.copy_(torch.tensor([1.0, 2.0, 3.0]))
        layer.add.copy_(torch.tensor([0.0, 1.0, -1.0]))
    weight, bias = layer.mult.detach(), layer.add.detach()
    torch.testing.assert_close(layer(x), F.instance_norm(x, weight=weight, bias=bias, eps=eps))


def test_instancenorm_default_eps_is_torchs() -> None:
    assert InstanceNorm(4).eps == 1e-5
    with pytest.raises(ValueError, match=r"InstanceNorm expects a batch \(N, 4"):
        InstanceNorm(4)(torch.randn(2, 4))


@pytest.mark.parametrize(("nf", "groups"), [(8, 4), (16, 4), (6, 2), (5, 1)])
def test_group_norm_default_groups(nf: int, groups: int) -> None:
    layer = group_norm(nf)
    assert isinstance(layer, nn.GroupNorm)
    assert (layer.num_groups, layer.num_channels, layer.eps) == (groups, nf, 1e-5)
    x = torch.randn(2, nf, 3, 3)
    torch.testing.assert_close(layer(x), F.group_norm(x, groups, eps=1e-5))


def test_group_norm_validation() -> None:
    assert group_norm(8, groups=8).num_groups == 8
    with pytest.raises(ValueError, match="groups should be a positive integer dividing nf=8"):
        group_norm(8, groups=3)


# RunningBatchNorm


class ReferenceRBN:
    """The lesson's formulas, step by step, in float64: the test's independent oracle."""

    def __init__(self, nf: int, mom: float = 0.1, eps: float = 1e-5) -> None:
        self.mom, self.eps = mom, eps
        self.sums = torch.zeros(nf, dtype=torch.float64)
        self.sqrs = torch.zeros(nf, dtype=torch.float64)
        self.count = 0.0
        self.dbias = 0.0
        self.step = 0
        self.samples = 0

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        sums, sqrs, count = self.sums, self.sqrs, self.count
        if self.step < 100:
            sums, sqrs, count = sums / self.dbias, sqrs / self.dbias, count / self.dbias
        mean = sums / count
        var = sqrs / count - mean * mean
        if self.samples < 20:
            var = var.clamp_min(0.01)
        return mean, var

    def train_step(self, x: torch.Tensor) -> torch.Tensor:
        bs, nf = x.shape[0], x.shape[1]
        mom1 = self.mom if bs == 1 else 1 - (1 - self.mom) / math.sqrt(bs - 1)
        s = x.sum((0, 2, 3))
        ss = (x * x).sum((0, 2, 3))
        self.sums = self.sums.detach() * (1 - mom1) + s * mom1
        self.sqrs = self.sqrs.detach() * (1 - mom1) + ss * mom1
        self.count = self.count * (1 - mom1) + x.numel() / nf * mom1
        self.dbias = self.dbias * (1 - mom1) + mom1
        self.step += 1
        self.samples += bs
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.stats()
        return (x - mean.view(1, -1, 1, 1)) / (var + self.eps).sqrt().view(1, -1, 1, 1)


def test_running_batchnorm_matches_the_lessons_formulas() -> None:
    """Outputs and input gradients over 110 steps of mixed batch sizes (past debiasing)."""
    sizes = [2, 3, 1, 5, 2, 8] * 18 + [4, 2]
    layer = RunningBatchNorm(3, mom=0.1).double()
    ref = ReferenceRBN(3, mom=0.1)
    for i, x in enumerate(_batches(*sizes, side=2)):
        x = x * 0.05 if i < 4 else x  # small variance while the clamp is active
        x1 = x.clone().requires_grad_()
        x2 = x.clone().requires_grad_()
        out1, out2 = layer(x1), ref.train_step(x2)
        torch.testing.assert_close(out1, out2, atol=1e-9, rtol=1e-7)
        (out1 * x).sum().backward()
        (out2 * x).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, atol=1e-9, rtol=1e-7)
    assert int(layer.step) == len(sizes) == 110
    assert int(layer.samples) == sum(sizes)
    layer.eval()
    x = _batches(6)[0] * 2
    torch.testing.assert_close(layer(x), ref.normalize(x), atol=1e-9, rtol=1e-7)
    assert int(layer.step) == 110  # eval leaves the statistics alone


def test_running_batchnorm_clamps_the_variance_while_few_samples() -> None:
    """Constant inputs have variance 0: clamped to 0.01 until 20 samples, then not."""
    layer = RunningBatchNorm(1).double()
    x = torch.full((2, 1, 3, 3), 0.5, dtype=torch.float64)
    x[0] += 0.001
    out = layer(x)
    mean = x.mean()
    torch.testing.assert_close(out, (x - mean) / math.sqrt(0.01 + 1e-5))
    for _ in range(9):
        layer(x)
    assert int(layer.samples) == 20
    var = (x * x).mean() - mean**2
    torch.testing.assert_close(layer(x), (x - mean) / (var + 1e-5).sqrt())


def test_running_batchnorm_batch_momentum() -> None:
    layer = RunningBatchNorm(2, mom=0.1)
    assert layer.batch_momentum(2) == pytest.approx(0.1)
    assert layer.batch_momentum(5) == pytest.approx(1 - 0.9 / 2)
    assert layer.batch_momentum(512) == pytest.approx(1 - 0.9 / math.sqrt(511))
    assert layer.batch_momentum(1) == layer.batch_momentum(2)


def test_running_batchnorm_batch_size_one_is_defined() -> None:
    """bs 1 (a division by zero in the lesson) updates with mom1 = mom, finite outputs."""
    layer = RunningBatchNorm(3).double()
    x = _batches(1)[0]
    out = layer(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(layer.sums, x.sum((0, 2, 3)) * 0.1)
    torch.testing.assert_close(layer.count, torch.tensor(16 * 0.1, dtype=torch.float64))
    tiny = layer(torch.randn(1, 3, 1, 1, dtype=torch.float64))
    assert torch.isfinite(tiny).all()


def test_running_batchnorm_eval_before_training_is_identity() -> None:
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(RunningBatchNorm(3).eval()(x), x / math.sqrt(1 + 1e-5))


def test_running_batchnorm_state_is_detached_and_copyable() -> None:
    layer = RunningBatchNorm(3)
    layer(torch.randn(4, 3, 2, 2, requires_grad=True))
    assert all(not b.requires_grad for b in layer.buffers())
    assert set(layer.state_dict()) == {
        "mult",
        "add",
        "sums",
        "sqrs",
        "count",
        "dbias",
        "step",
        "samples",
    }
    clone = copy.deepcopy(layer)
    x = torch.randn(2, 3, 2, 2)
    torch.testing.assert_close(clone.eval()(x), layer.eval()(x))


def test_running_batchnorm_trains_at_batch_size_2_where_batchnorm_fails() -> None:
    """The lesson's point, on 400 digits: RunningBatchNorm trains at bs 2, and beats
    BatchNorm by a wide gap (bounds and their measured spread: tests/outcomes.py)."""
    RUNNING_BATCHNORM_TRAINS_AT_BS2.check()
    RUNNING_BATCHNORM_BEATS_BATCHNORM_AT_BS2.check()


@pytest.mark.parametrize(
    "make", [lambda: BatchNorm(3), lambda: RunningBatchNorm(3), LayerNorm, lambda: InstanceNorm(3)]
)
def test_low_precision_inputs_keep_their_dtype(make: type[nn.Module]) -> None:
    """bfloat16 in (as under autocast), bfloat16 out, statistics computed in float32."""
    x = _batches(4)[0].float()
    reference = make()
    expected = reference(x)
    layer = make()
    out = layer(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.02)
    assert all(b.dtype != torch.bfloat16 for b in layer.buffers())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_norms_do_not_sync_with_the_host_on_cuda() -> None:
    """Training and eval steps of BatchNorm and RunningBatchNorm run without a host sync."""
    layers = [BatchNorm(3).cuda(), RunningBatchNorm(3).cuda()]
    x = torch.randn(4, 3, 5, 5, device="cuda", requires_grad=True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for layer in layers:
            for _ in range(3):
                layer(x).sum().backward()
            layer.eval()(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ref = ReferenceRBN(3)
    for _ in range(3):
        ref.train_step(x.detach().cpu().double())
    torch.testing.assert_close(
        layers[1](x).detach().cpu().double(),
        ref.normalize(x.detach().cpu().double()),
        atol=1e-5,
        rtol=1e-4,
    )
