"""lookinside's engine: the loop, the event bus and the plugin contract."""

from engine.data import DataBunch
from engine.data import TensorLoader
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
from engine.learner import Learner
from engine.manager import load_catalog
from engine.manager import make_plugin_manager
from engine.options import Option
from engine.version import __version__

__all__ = [
    "CancelBatchException",
    "CancelEpochException",
    "CancelException",
    "CancelTrainException",
    "DataBunch",
    "DataError",
    "Learner",
    "LookinsideError",
    "Option",
    "OptimizerError",
    "PluginError",
    "PluginValidationError",
    "Register",
    "RegisterDataset",
    "TensorLoader",
    "TrainingDiverged",
    "__version__",
    "hookimpl",
    "load_catalog",
    "make_plugin_manager",
]
