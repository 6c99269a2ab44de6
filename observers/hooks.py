"""PyTorch module hooks as context managers, removed explicitly and exactly once.

A :class:`Hook` calls a function each time one module runs forward (or, with
``forward=False``, each time gradients flow back through it); :class:`Hooks`
does the same for many modules at once::

    with Hooks(model.children(), lambda m, inp, out: print(type(m).__name__, out.shape)):
        model(xb)

Leaving the ``with`` block removes every hook, also when the block raises. The
hooks can be removed earlier by calling :meth:`Hook.remove`, which may be
called any number of times. Nothing relies on ``__del__``: a hook that is
neither removed nor left by its ``with`` block stays on its module for as long
as the module lives, as with torch's own handles.

The function's return value is kept in :attr:`Hook.stored` (it is never
returned to torch, so a hook cannot replace a module's output by accident).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

HookFunc = Callable[[nn.Module, Any, Any], Any]
"""``fn(module, inputs, outputs)`` forward; ``fn(module, grad_inputs, grad_outputs)`` backward."""


class Hook:
    """One forward or backward hook on one module, removable and a context manager.

    A forward hook calls ``fn(module, inputs, outputs)`` after the module's
    ``forward``; a backward hook (``forward=False``, registered with
    ``register_full_backward_hook``) calls ``fn(module, grad_inputs,
    grad_outputs)`` once the gradients with respect to the module's inputs are
    computed. Full backward hooks cannot be used on a module whose output is
    modified in place afterwards (for example by a following
    ``nn.ReLU(inplace=True)``): torch raises an error in that case.

    The hook keeps no reference to the module, only torch's handle.

    :param module: the module to hook.
    :param fn: the function to call.
    :param forward: a forward hook when true, a backward hook otherwise.
    """

    def __init__(self, module: nn.Module, fn: HookFunc, forward: bool = True) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"Hook needs a torch.nn.Module to hook, got {type(module).__name__}: {module!r}"
            )
        if not callable(fn):
            raise TypeError(f"Hook needs a callable fn(module, inputs, outputs), got {fn!r}")
        self.fn = fn
        self.forward = forward
        self.stored: Any = None
        """What ``fn`` returned the last time it ran (``None`` before)."""
        self.module_type = type(module).__name__
        """The hooked module's class name (the module itself is not kept)."""
        register = module.register_forward_hook if forward else module.register_full_backward_hook
        self._handle: RemovableHandle | None = register(self._call)

    def _call(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        self.stored = self.fn(module, inputs, outputs)
        # returning None tells torch to leave the outputs (or gradients) unchanged

    @property
    def removed(self) -> bool:
        """Whether the hook has been removed from its module."""
        return self._handle is None

    def remove(self) -> None:
        """Take the hook off its module; calling it again does nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.remove()

    def __enter__(self) -> Hook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        kind = "forward" if self.forward else "backward"
        state = "removed" if self.removed else "attached"
        return f"<Hook {kind} on {self.module_type}, {state}>"


class Hooks:
    """The same hook on many modules: one :class:`Hook` each, removed together.

    If registering one of the hooks fails, those already registered are removed
    before the error propagates.

    :param modules: the modules to hook, e.g. ``model.children()``.
    :param fn: called as ``fn(module, inputs, outputs)`` (see :class:`Hook`).
    :param forward: forward hooks when true, backward hooks otherwise.
    """

    def __init__(self, modules: Iterable[nn.Module], fn: HookFunc, forward: bool = True) -> None:
        self.hooks: list[Hook] = []
        """One hook per module, in the order the modules were given."""
        try:
            for module in modules:
                self.hooks.append(Hook(module, fn, forward))
        except BaseException:
            self.remove()
            raise

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    def __getitem__(self, index: int) -> Hook:
        return self.hooks[index]

    @property
    def stored(self) -> list[Any]:
        """Each hook's :attr:`Hook.stored`, in order."""
        return [hook.stored for hook in self.hooks]

    def remove(self) -> None:
        """Remove every hook; calling it again does nothing."""
        for hook in self.hooks:
            hook.remove()

    def __enter__(self) -> Hooks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        attached = sum(not hook.removed for hook in self.hooks)
        return f"<Hooks on {len(self.hooks)} modules, {attached} attached>"
