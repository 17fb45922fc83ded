"""Training guards shared by every trainable method."""

from __future__ import annotations

import math

from lightning.pytorch import Callback


class NonFiniteLossGuard(Callback):
    """Stop a run whose training loss becomes NaN/inf, naming the step: a diverged run must not look finished."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"training loss is {float(loss)} at global step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}, batch {batch_idx}); stopping the run"
            )
