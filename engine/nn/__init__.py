"""The lesson's network: the CNN, its layers and norms, kaiming init, and models by name.

Building blocks a model is made of, apart from the engine that trains it:
:mod:`engine.nn.models` (the CNN, the MLP and their layer factories),
:mod:`engine.nn.layers` (GeneralRelu and the normalizations),
:mod:`engine.nn.running_batchnorm`, :mod:`engine.nn.init`, :mod:`engine.nn.resnet`
(torchvision's ResNet18 for small images) and :mod:`engine.nn.build`, which builds
any of them by name for a dataset (``lookinside fit --model``).
"""

from engine.nn.build import ACTIVATIONS
from engine.nn.build import INITS
from engine.nn.build import MODELS
from engine.nn.build import ModelError
from engine.nn.build import ModelSpec
from engine.nn.build import build_model
from engine.nn.build import parse_activation
from engine.nn.init import init_cnn
from engine.nn.layers import BatchNorm
from engine.nn.layers import GeneralRelu
from engine.nn.layers import InstanceNorm
from engine.nn.layers import LayerNorm
from engine.nn.layers import group_norm
from engine.nn.models import CHANNELS
from engine.nn.models import CHANNELS_07
from engine.nn.models import FLAT_NORMS
from engine.nn.models import MLP_WIDTHS
from engine.nn.models import NORMS
from engine.nn.models import Lambda
from engine.nn.models import NormSpec
from engine.nn.models import cnn
from engine.nn.models import cnn_07
from engine.nn.models import conv_layer
from engine.nn.models import conv_norm_layer
from engine.nn.models import flatten
from engine.nn.models import mlp
from engine.nn.resnet import replace_modules
from engine.nn.resnet import small_resnet18
from engine.nn.running_batchnorm import RunningBatchNorm

__all__ = [
    "ACTIVATIONS",
    "CHANNELS",
    "CHANNELS_07",
    "FLAT_NORMS",
    "INITS",
    "MLP_WIDTHS",
    "MODELS",
    "NORMS",
    "BatchNorm",
    "GeneralRelu",
    "InstanceNorm",
    "Lambda",
    "LayerNorm",
    "ModelError",
    "ModelSpec",
    "NormSpec",
    "RunningBatchNorm",
    "build_model",
    "cnn",
    "cnn_07",
    "conv_layer",
    "conv_norm_layer",
    "flatten",
    "group_norm",
    "init_cnn",
    "mlp",
    "parse_activation",
    "replace_modules",
    "small_resnet18",
]
