"""Switch the model between training and evaluation mode, and count progress.

Always on: the loop relies on it for the model's mode during validation, and other
plugins (schedules, the LR finder) read the progress it keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.hookspecs import hookimpl


class TrainEval:
    """Put the model in train/eval mode per pass and count epochs and iterations.

    Maintains on the learner: ``n_epochs`` (fractional epochs of training done,
    e.g. 1.5 halfway through the second epoch) and ``n_iter`` (training batches
    done since the fit began).
    """

    name = "train_eval"
    order = -100

    def begin_fit(self, learner: Any) -> None:
        learner.n_epochs = 0.0
        learner.n_iter = 0

    def begin_epoch(self, learner: Any) -> None:
        learner.n_epochs = float(learner.epoch)
        learner.model.train()

    def after_batch(self, learner: Any) -> None:
        if learner.in_train:
            learner.n_iter += 1
            if learner.iters:
                learner.n_epochs += 1.0 / learner.iters

    def begin_validate(self, learner: Any) -> None:
        learner.model.eval()

    def after_fit(self, learner: Any) -> None:
        learner.model.train()


@hookimpl
def lookinside_register(register: Callable[..., Any]) -> None:
    register(TrainEval, default=True)
