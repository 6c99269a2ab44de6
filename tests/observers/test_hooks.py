"""Hook and Hooks: what the function receives, and removal on every way out."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from observers.hooks import Hook
from observers.hooks import Hooks


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
        for m in model.modules()
    )


def test_forward_hook_sees_module_inputs_and_outputs() -> None:
    net = small_net()
    x = torch.randn(5, 3)
    seen: list[Any] = []
    with Hook(net[0], lambda m, inp, out: seen.append((m, inp[0], out.detach().clone()))):
        y = net(x)
    ((module, inp, out),) = seen
    assert module is net[0]
    assert inp is x
    torch.testing.assert_close(out, net[0](x), rtol=0, atol=0)
    assert y.shape == (5, 2)


def test_stored_keeps_the_last_return_value_and_outputs_are_untouched() -> None:
    net = small_net()
    x = torch.randn(2, 3)
    expected = net(x)
    with Hook(net[1], lambda m, inp, out: out.detach().sum() * 0 + 7.0) as hook:
        got = net(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)  # the return value replaced nothing
    assert float(hook.stored) == 7.0


def test_backward_hook_gets_the_gradient_of_the_output() -> None:
    net = small_net()
    x = torch.randn(6, 3)
    captured: dict[str, torch.Tensor] = {}
    with Hook(
        net[2], lambda m, gin, gout: captured.setdefault("g", gout[0].clone()), forward=False
    ):
        out = net(x)
        (out**2).sum().backward()
    torch.testing.assert_close(captured["g"], 2 * out.detach())  # d(sum y^2)/dy = 2y


def test_hook_is_removed_on_exit_and_on_exception() -> None:
    net = small_net()
    calls: list[int] = []
    with Hook(net[0], lambda *a: calls.append(1)) as hook:
        assert net[0]._forward_hooks
    assert hook.removed and no_hooks(net)
    with pytest.raises(RuntimeError, match="boom"), Hook(net[0], lambda *a: calls.append(1)):
        raise RuntimeError("boom")
    assert no_hooks(net)
    net(torch.randn(1, 3))
    assert calls == []


def test_remove_twice_is_harmless_and_repr_says_so() -> None:
    net = small_net()
    hook = Hook(net[0], lambda *a: None)
    assert "attached" in repr(hook)
    hook.remove()
    hook.remove()
    assert repr(hook) == "<Hook forward on Linear, removed>"
    assert no_hooks(net)


def test_hook_rejects_non_modules_and_non_callables() -> None:
    with pytest.raises(TypeError, match="Hook needs a torch.nn.Module"):
        Hook("conv", lambda *a: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        Hook(nn.ReLU(), 3)  # type: ignore[arg-type]


def test_hooks_call_the_function_for_every_module_in_order() -> None:
    net = small_net()
    order: list[str] = []
    with Hooks(net.children(), lambda m, i, o: type(m).__name__) as hooks:
        with Hooks(net.children(), lambda m, i, o: order.append(type(m).__name__)):
            net(torch.randn(2, 3))
        assert len(hooks) == 3
        assert hooks.stored == ["Linear", "ReLU", "Linear"]
        assert hooks[1].module_type == "ReLU"
    assert order == ["Linear", "ReLU", "Linear"]
    assert no_hooks(net)
    assert repr(hooks) == "<Hooks on 3 modules, 0 attached>"


def test_hooks_registration_failure_removes_those_already_registered() -> None:
    net = small_net()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Hooks([net[0], net[1], "not a module"], lambda *a: None)  # type: ignore[list-item]
    assert no_hooks(net)


def test_hooks_removed_on_exception_inside_the_block() -> None:
    net = small_net()
    with pytest.raises(KeyboardInterrupt), Hooks(net.children(), lambda *a: None):
        net(torch.randn(1, 3))
        raise KeyboardInterrupt
    assert no_hooks(net)
