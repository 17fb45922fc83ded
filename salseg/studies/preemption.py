"""Save-on-SIGTERM: a preempted (or ``scancel --signal=TERM``) training leaves ``checkpoints/last.ckpt`` at the
step it reached, and a job of the SLURM launcher requeues itself (README "Studies on SLURM").

Lightning 2.6 already turns SIGTERM into a clean stop: its signal handler sets ``trainer.received_sigterm`` and the
training loop raises ``SIGTERMException`` (a ``SystemExit``) once the current batch is done, calling every
callback's ``on_exception`` on the way out. So one callback is all it takes: it writes the run's ``last.ckpt``
there (the batch completed: the checkpoint's ``global_step`` counts it) and, inside a launcher job
(``SALSEG_REQUEUE_ON_TERM=1``, set by :func:`salseg.studies.launch.run_job`), runs ``scontrol requeue
$SLURM_JOB_ID``. The restarted job continues the recorded run from that file (:func:`salseg.studies.run.
run_variant`). Lightning's own ``SLURMEnvironment(auto_requeue=True)`` is not used for this: it saves
``hpc_ckpt_N.ckpt`` on SIGUSR1 only, and submitit bypasses SIGTERM and keeps SIGUSR2 for its time-outs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lightning.pytorch import Callback

REQUEUE_ENV = "SALSEG_REQUEUE_ON_TERM"


class SaveOnSigterm(Callback):
    """On Lightning's SIGTERM stop during fit: ``trainer.save_checkpoint(<run>/checkpoints/last.ckpt)``, then
    requeue the SLURM job when the launcher asked for it."""

    def __init__(self, last_ckpt: str | Path):
        self.last_ckpt = Path(last_ckpt)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        from lightning.pytorch.trainer.states import TrainerFn
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        trainer.save_checkpoint(self.last_ckpt)  # every rank calls it (a collective under DDP); rank 0 writes
        if trainer.is_global_zero:
            print(f"[salseg] SIGTERM: saved {self.last_ckpt} at step {trainer.global_step}", flush=True)
        job = os.environ.get("SLURM_JOB_ID")
        if trainer.is_global_zero and job and os.environ.get(REQUEUE_ENV) == "1":
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
            print(f"[salseg] SIGTERM: scontrol requeue {job}: "
                  + ("requeued" if done.returncode == 0 else f"failed: {done.stderr.strip()}"), flush=True)
