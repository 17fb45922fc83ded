"""Step schedules that mean the same thing on one process or many.

The authors count learning-rate milestones in iterations of ONE process (MEnet, paper 003 Sec. IV-A and its
released solver: batch 5, x0.1 at 60k / 90k / 100k iterations). Lightning counts optimiser steps per process, and
under DDP each step consumes ``world_size x batch_size x accumulate_grad_batches`` images, so the same milestones
would come ``world_size`` times too late (in images seen). Milestones are therefore written in iterations of
``schedule_batch`` images (the authors' batch; null = this run's ``data.batch_size``) and converted here to
optimiser steps of this run: the step at which the same number of images has been seen.

Epoch-based limits (``trainer.max_epochs``) and schedules derived from ``trainer.estimated_stepping_batches``
(poly, one-cycle) already count images, so they need nothing.
"""

from __future__ import annotations

from collections.abc import Sequence


def steps_for_run(milestones: Sequence[int], *, world_size: int = 1, batch_size: int | None = None,
                  accumulate: int = 1, schedule_batch: int | None = None) -> list[int]:
    """``milestones`` (iterations of ``schedule_batch`` images on one process) -> optimiser steps of a run with
    ``world_size`` processes of ``batch_size`` images accumulating ``accumulate`` batches per step. A schedule that
    cannot be kept (a milestone before the first step, or two milestones on one step) is an error naming the keys."""
    milestones = [int(m) for m in milestones]
    if not milestones:
        return []
    if schedule_batch is not None and batch_size is None:
        raise ValueError("model.schedule_batch is set but the data module has no batch_size to convert to: set "
                         "model.schedule_batch=null (milestones in this run's own iterations)")
    per_step = int(world_size) * int(accumulate) * (int(batch_size) if schedule_batch is not None else 1)
    per_iter = int(schedule_batch) if schedule_batch is not None else 1
    if per_step == per_iter:
        return milestones
    steps = [int(round(m * per_iter / per_step)) for m in milestones]
    if steps[0] < 1 or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(
            f"model.milestones {milestones} (iterations of {per_iter if schedule_batch else 'data.batch_size'} "
            f"images, model.schedule_batch={schedule_batch}) become optimiser steps {steps} with "
            f"trainer.devices x num_nodes = {world_size}, data.batch_size = {batch_size}, "
            f"trainer.accumulate_grad_batches = {accumulate}: a milestone before the first step or two on one step; "
            "give milestones that stay apart at this scale")
    return steps


def module_milestones(module, milestones: Sequence[int], schedule_batch: int | None = None) -> list[int]:
    """:func:`steps_for_run` with the world size, accumulation and batch size of ``module``'s trainer (a module
    not attached to a trainer gets ``milestones`` as they are: one process)."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None:
        return [int(m) for m in milestones]
    dm = getattr(trainer, "datamodule", None)
    return steps_for_run(milestones, world_size=trainer.world_size, batch_size=getattr(dm, "batch_size", None),
                         accumulate=int(getattr(trainer, "accumulate_grad_batches", 1) or 1),
                         schedule_batch=schedule_batch)
