"""Training guards shared by every trainable method."""

from __future__ import annotations

import math

from lightning.pytorch import Callback

from salseg.errors import SalsegError


class NonFiniteLossError(SalsegError, FloatingPointError):
    """The training loss became NaN/inf: a diverged run (the learning rate, the data), shown as one line."""


class NonFiniteLossGuard(Callback):
    """Stop a run whose training loss becomes NaN/inf, naming the step: a diverged run must not look finished.

    Checked before the backward pass, so the optimizer never applies a NaN update: the weights (and any
    checkpoint written later by accident) stay those of the last finite step. ``global step`` is the number of
    optimizer steps already taken, i.e. the 0-based index of the failing step.
    """

    def __init__(self) -> None:
        self._batch_idx = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"training loss is {value} at global step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}, batch {self._batch_idx}); stopping the run"
            )
