"""Where each built-in plugin runs among an event's receivers: one table, named constants.

A plugin's ``order`` attribute (an int, lower runs first, 0 by default) places its
receivers among the other plugins' for every event it handles; plugins of equal
order run in the order they were attached. The built-ins take their places from
this table, and a plugin of your own can name its place relative to theirs::

    from engine import order

    class GradNorm:
        order = order.METRICS + 5  # after metrics wrote the epoch's log, before progress prints it

=====================  =====  ================================================================
constant               value  why there
=====================  =====  ================================================================
``RESUME``             -100   ``checkpoint``'s ``begin_fit`` only (its ``event_order``): a resumed
                              fit's state is back before any other plugin's ``begin_fit`` runs
``SAVE``               -90    ``checkpoint``'s ``after_fit`` only: ``interrupted.pt`` is written
                              before the slow ``after_fit`` work (plots) a second Ctrl-C may cut
``DEVICE``             -50    moves the model in begin_fit and each batch in begin_batch before
                              anything reads them
``DDP``                -45    wraps the model once ``device`` has moved it
``SCHEDULE``           -20    sets the hyper-parameters of a batch before anything records them
``LR_FIND``            -15    after ``schedule``, so the sweep's learning rate wins
``BATCH_TRANSFORM``    -10    reshapes the (moved) batch before the model and observers see it
``DEFAULT``            0      a plugin that sets no order
``TERMINATE_ON_NAN``   5      checks the loss before observers accumulate it
``METRICS``            10     writes the epoch's averages into ``learner.log`` in after_epoch
``RECORDER``           20     records the loss and hyper-parameters once they are final
``ACTIVATION_STATS``   25     after metrics, before progress prints the epoch's row
``PROGRESS``           30     prints the row of ``learner.log`` once the observers wrote it
``TENSORBOARD``        40     logs what metrics and recorder computed
``GRAD_ACCUMULATION``  45     in after_backward, decides whether this batch steps
``MIXED_PRECISION``    50     unscales the gradients before they are clipped
``GRAD_CLIP``          60     clips the unscaled gradients just before the step
``CHECKPOINT``         80     saves after every observer logged the epoch
``CSV_LOGGER``         90     writes the epoch's finished row
``EARLY_STOPPING``     100    decides last in after_epoch, when every value is logged
=====================  =====  ================================================================

Not guaranteed: the numbers themselves may change between releases; their
relative order is what the tests pin.
"""

from __future__ import annotations

RESUME = -100
SAVE = -90
DEVICE = -50
DDP = -45
SCHEDULE = -20
LR_FIND = -15
BATCH_TRANSFORM = -10
DEFAULT = 0
TERMINATE_ON_NAN = 5
METRICS = 10
RECORDER = 20
ACTIVATION_STATS = 25
PROGRESS = 30
TENSORBOARD = 40
GRAD_ACCUMULATION = 45
MIXED_PRECISION = 50
GRAD_CLIP = 60
CHECKPOINT = 80
CSV_LOGGER = 90
EARLY_STOPPING = 100
