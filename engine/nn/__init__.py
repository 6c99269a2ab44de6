"""The lesson's network: the CNN, its layers and norms, and kaiming init.

Building blocks a model is made of, apart from the engine that trains it:
:mod:`engine.nn.models` (the CNN and its layer factories), :mod:`engine.nn.layers`
(GeneralRelu and the normalizations), :mod:`engine.nn.running_batchnorm` and
:mod:`engine.nn.init`.
"""

from engine.nn.init import init_cnn
from engine.nn.layers import BatchNorm
from engine.nn.layers import GeneralRelu
from engine.nn.layers import InstanceNorm
from engine.nn.layers import LayerNorm
from engine.nn.layers import group_norm
from engine.nn.models import CHANNELS_07
from engine.nn.models import NORMS
from engine.nn.models import Lambda
from engine.nn.models import NormSpec
from engine.nn.models import cnn
from engine.nn.models import cnn_07
from engine.nn.models import conv_layer
from engine.nn.models import conv_norm_layer
from engine.nn.models import flatten
from engine.nn.running_batchnorm import RunningBatchNorm

__all__ = [
    "CHANNELS_07",
    "NORMS",
    "BatchNorm",
    "GeneralRelu",
    "InstanceNorm",
    "Lambda",
    "LayerNorm",
    "NormSpec",
    "RunningBatchNorm",
    "cnn",
    "cnn_07",
    "conv_layer",
    "conv_norm_layer",
    "flatten",
    "group_norm",
    "init_cnn",
]
