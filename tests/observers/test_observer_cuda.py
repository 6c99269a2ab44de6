"""On a CUDA device the observers never synchronise per batch (skipped without one)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from engine.data import DataBunch
from engine.learner import Learner
from observers.csv_logger import CSVLogger
from observers.metrics import Metrics
from observers.progress import Progress
from observers.recorder import Recorder

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_a_few_syncs_per_epoch_none_per_batch(tensors, tmp_path, capsys):
    device = torch.device("cuda")
    data = DataBunch.from_tensors(
        tensors.x_train.to(device),
        tensors.y_train.to(device),
        tensors.x_valid.to(device),
        tensors.y_valid.to(device),
        bs=4,
    )  # 13 training and 4 validation batches per epoch
    metrics, recorder = Metrics(("accuracy", "error_rate")), Recorder()
    plugins = [metrics, recorder, Progress(bar=False), CSVLogger()]
    learner = Learner(
        nn.Linear(4, 3).to(device), data, plugins=plugins, defaults=False, out_dir=tmp_path
    )
    learner.fit(1)  # warm-up: the first kernels and cuBLAS may synchronise
    epochs = 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            learner.fit(epochs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    # per epoch: the loader's shuffled order, metrics once, recorder once (+1 spare);
    # one sync per batch would make it at least 13 per epoch
    assert len(syncs) <= 4 * epochs, [str(w.message) for w in syncs]
    assert len(recorder.losses) == 13 * epochs
    assert metrics.last is not None
    assert isinstance(metrics.last["valid_accuracy"], float)
