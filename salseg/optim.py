"""The optimisers and learning-rate schedules of the methods that train (MEnet, DCSP, GD saliency), built in one place.

``model.optimizer``: ``sgd`` (momentum and weight decay: the papers' training and fine-tuning), ``adam``
(``torch.optim.Adam``, L2 weight decay) or ``adamw`` (``torch.optim.AdamW``, decoupled weight decay); the last two
are for networks trained from scratch on a CPU. Schedules step every optimiser step; milestones count iterations
of one process and are converted to this run's steps by :mod:`salseg.schedules`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from salseg.schedules import module_milestones
from salseg.validation import one_of

OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(name: str, params: Iterable, *, lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """``model.optimizer`` ``name`` over ``params`` (tensors or param groups with their own ``lr``); ``momentum``
    only applies to SGD."""
    one_of("model.optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    adam = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return adam(params, lr=lr, weight_decay=weight_decay)


def multistep(optimizer: torch.optim.Optimizer, milestones: Sequence[int], gamma: float, module=None,
              schedule_batch: int | None = None) -> torch.optim.lr_scheduler.MultiStepLR:
    """x ``gamma`` at each of ``milestones`` (iterations of ``schedule_batch`` images on one process), converted to
    the steps of ``module``'s trainer (:func:`salseg.schedules.module_milestones`; no module: as given)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=module_milestones(module, milestones,
                                                                                        schedule_batch), gamma=gamma)


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, max_lr: float,
              warmup: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """One cycle over ``total_steps`` (at least 2) peaking at ``max_lr`` after a ``warmup`` fraction; no momentum
    cycling (Adam's betas stay as they are)."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(int(total_steps), 2),
                                               pct_start=warmup, cycle_momentum=False)


def stepwise(optimizer: torch.optim.Optimizer, scheduler) -> dict:
    """What ``configure_optimizers`` returns for a schedule that steps every optimiser step."""
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def optimizer_with_milestones(groups: list[dict], hp, module=None):
    """``hp.optimizer`` (default ``sgd``) over ``groups`` with ``hp.lr`` / ``momentum`` / ``weight_decay``, and a
    MultiStepLR at ``hp.milestones`` (x ``hp.gamma``) when there are any, converted to the steps of ``module``'s
    trainer under DDP; without milestones the bare optimiser."""
    opt = build_optimizer(hp.get("optimizer", "sgd"), groups, lr=hp.lr, momentum=hp.momentum,
                          weight_decay=hp.weight_decay)
    if not hp.milestones:
        return opt
    return stepwise(opt, multistep(opt, hp.milestones, hp.gamma, module))
