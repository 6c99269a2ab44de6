"""lookinside's engine: the loop, the event bus and the plugin contract.

The names that need torch (:class:`Learner`, :class:`DataBunch`...) are imported on
first use (PEP 562), so that ``lookinside --help`` and the plugin catalogue import
no torch; ``from engine import Learner`` works as before.
"""

from typing import TYPE_CHECKING

from engine.exceptions import BatchError
from engine.exceptions import CancelBatchException
from engine.exceptions import CancelEpochException
from engine.exceptions import CancelException
from engine.exceptions import CancelTrainException
from engine.exceptions import DataError
from engine.exceptions import LookinsideError
from engine.exceptions import OptimizerError
from engine.exceptions import PluginError
from engine.exceptions import PluginValidationError
from engine.exceptions import TrainingDiverged
from engine.hookspecs import Register
from engine.hookspecs import RegisterDataset
from engine.hookspecs import hookimpl
from engine.manager import load_catalog
from engine.manager import make_plugin_manager
from engine.options import Option
from engine.training_loop import TrainingLoop
from engine.version import __version__

if TYPE_CHECKING:
    from engine.data import DataBunch
    from engine.data import TensorLoader
    from engine.inference import Prediction
    from engine.learner import Learner
    from engine.summary import LayerRow
    from engine.summary import ModelSummary

_LAZY = {
    "DataBunch": "engine.data",
    "LayerRow": "engine.summary",
    "Learner": "engine.learner",
    "ModelSummary": "engine.summary",
    "Prediction": "engine.inference",
    "TensorLoader": "engine.data",
}
"""The public names that import torch, by the module defining them."""


def __getattr__(name: str) -> object:
    """Import a name of :data:`_LAZY` on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "CancelBatchException",
    "CancelEpochException",
    "CancelException",
    "CancelTrainException",
    "DataBunch",
    "BatchError",
    "DataError",
    "LayerRow",
    "Learner",
    "LookinsideError",
    "ModelSummary",
    "Option",
    "OptimizerError",
    "PluginError",
    "PluginValidationError",
    "Prediction",
    "Register",
    "RegisterDataset",
    "TensorLoader",
    "TrainingDiverged",
    "TrainingLoop",
    "__version__",
    "hookimpl",
    "load_catalog",
    "make_plugin_manager",
]
