"""Against a real SLURM: the one-node cluster of `.ci/slurm_localhost.sh` (slurmctld + slurmd on this machine).

The cluster fixture starts it when it is not up and stops only what it started; where it cannot run (not root,
no slurm-wlm/munge and no way to install them, CI without the packages) every test here skips with the script's
reason. The jobs run as root with this test's own python (``sys.executable``, the repo's venv), so they import
salseg; there is no accounting database, so job states come from ``sacct -c`` (the jobcomp file) and ``squeue``.
"""

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from launch_support import SCRIPT, SKIP_EXIT, in_queue, sacct_rows, salseg, skip_reason, wait_until

ROOT = Path(__file__).resolve().parents[1]
def test_the_cluster_script_says_why_it_cannot_run_in_one_line():
    # what CI sees: not root, no slurm-wlm. A PATH without sbatch, as an unprivileged user (root drops to nobody);
    # the script comes on stdin and `id` from a world-readable folder, as the checkout may not be readable by nobody
    def tool(name: str) -> str:
        return shutil.which(name) or shutil.which(name, path=f"{os.defpath}:/usr/sbin:/sbin") or name

    as_user = [tool("runuser"), "-u", "nobody", "--"] if os.geteuid() == 0 else []
    with tempfile.TemporaryDirectory(dir="/tmp") as bin_dir, open(SCRIPT) as script:
        os.chmod(bin_dir, 0o755)
        os.symlink(tool("id"), Path(bin_dir) / "id")
        got = subprocess.run([*as_user, tool("env"), f"PATH={bin_dir}", "/bin/bash", "-s", "start"], stdin=script,
                             capture_output=True, text=True, timeout=60, cwd="/")
    assert got.returncode == SKIP_EXIT, got.stdout + got.stderr
    assert skip_reason(got.stdout) == ("slurm_localhost: SKIP: slurm-wlm/munge not installed and not root "
                                       "(cannot apt-get install)")
    assert subprocess.run(["/bin/bash", str(SCRIPT), "restart"], capture_output=True, text=True).returncode == 2


# A very narrow MEnet (depth 3, width 4) on 64 shapes images at 32 px: 8 steps an epoch, 40 in all.
MAX_STEPS = 40
TINY_MENET = [
    "logger=csv", "model.depth=3", "model.width=4", "model.max_width=16", "data.image_size=32",
    "data.num_workers=0", "data.val=null", "data.batch_size=8",
    "data.train={dataset: shapes, split: train, size: 64, image_size: 32}",
    "data.test={shapes: {dataset: shapes, split: test, size: 4}}", "data.eval_batch_size=4",
    "trainer.max_epochs=100", f"trainer.max_steps={MAX_STEPS}", "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
]

# A plain sbatch script, no launcher: the batch shell traps TERM (with `--full` the signal reaches it too, and an
# untrapped bash dies of it, failing the job); salseg saves last.ckpt on TERM and, asked by SALSEG_REQUEUE_ON_TERM,
# requeues the job (salseg.studies.preemption); the restarted job (SLURM_RESTART_COUNT=1) continues with --resume.
JOB_SCRIPT = """#!/bin/bash
#SBATCH --job-name=salseg_term_test
#SBATCH --partition=debug
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=10
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={log}
trap 'echo "[batch] SIGTERM"' TERM
echo "[batch] start SLURM_RESTART_COUNT=${{SLURM_RESTART_COUNT:-0}}"
resume=""; [ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ] && resume=--resume
cd {root}
export SALSEG_REQUEUE_ON_TERM=1 OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore WANDB_MODE=offline
{python} -m salseg run menet_shapes {overrides} runs_dir={runs} $resume
"""


def _ckpt_step(path: Path) -> tuple[int, int]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["global_step"], ckpt["epoch"]


UNINTERRUPTED = (MAX_STEPS, MAX_STEPS // 8 - 1)  # (global_step, epoch) of the uninterrupted run: 8 steps an epoch


@pytest.mark.slow  # ~30 s on the cluster: `make test` keeps the launcher's own TERM test
def test_sbatch_training_killed_with_term_is_requeued_and_ends_at_max_steps(slurm_cluster, tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "job.log"
    script = tmp_path / "job.sh"
    script.write_text(JOB_SCRIPT.format(log=log, root=ROOT, python=sys.executable, runs=runs,
                                        overrides=" ".join(shlex.quote(o) for o in TINY_MENET)))
    job = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True)
    job_id = job.stdout.strip().split(";")[0]
    try:
        # the epoch-0 checkpoint says training is under way (32 steps to go): preempt it there
        wait_until(lambda: list(runs.glob("menet_shapes/*/checkpoints/last.ckpt")), 240,
                   lambda: f"no checkpoint after 240 s; job {job_id} log:\n{log.read_text() if log.exists() else ''}",
                   every=0.05)
        subprocess.run(["scancel", "--signal=TERM", "--full", job_id], check=True)
        wait_until(lambda: not in_queue(job_id), 300, lambda: f"job {job_id} still queued:\n{log.read_text()}", 1)
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)
    text = log.read_text()
    (run_dir,) = (runs / "menet_shapes").iterdir()  # the restart continued the same run folder
    saved = [int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("[salseg] SIGTERM: saved")]
    assert len(saved) == 1 and 0 < saved[0] < MAX_STEPS, text[-3000:]  # saved mid-training, at the step reached
    assert f"[salseg] SIGTERM: scontrol requeue {job_id}: requeued" in text
    assert "[batch] start SLURM_RESTART_COUNT=1" in text
    assert f"[salseg] resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in text
    # jobcomp rows: the requeued run, then the completed one
    assert [r[2:] for r in sacct_rows(job_id)] == [["PENDING", "0:0"], ["COMPLETED", "0:0"]], sacct_rows(job_id)
    assert _ckpt_step(run_dir / "checkpoints" / "last.ckpt") == UNINTERRUPTED
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "complete" and doc["n_images"] == {"shapes": 4}


def write_ablation(folder: Path, name: str, text: str) -> Path:
    (folder / "experiments" / "ablations").mkdir(parents=True)
    (folder / "experiments" / "ablations" / f"{name}.yaml").write_text(text)
    return folder


RC_THREE = """base: rc_shapes
description: three Region Contrast variants (tests/test_slurm.py)
variants:
  rc: {}
  rc_no_spatial: {model.sigma_s2: 1.0e6}
  rc_strong_spatial: {model.sigma_s2: 0.1}
"""
TINY_RC = ["data.test.shapes.size=6", "data.num_workers=0", "logger=csv"]
LAUNCHER = ["launcher=slurm", "launcher.partition=debug", "launcher.timeout_min=10"]


def submitted_jobs(out: str) -> dict[str, str]:
    """variant (and "collect") -> job id, from the lines "[salseg] ablation NAME: VARIANT  job ID  log ..."."""
    jobs = {}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("[salseg] ablation") and "job" in words:
            jobs[words[3]] = words[words.index("job") + 1]
    return jobs


def cancel_study_jobs(runs: Path, name: str) -> None:
    """scancel the jobs a study under ``runs`` recorded (a launch that failed or timed out leaves them queued)."""
    for state in (runs / "ablations" / name).glob("*/plan_state.json"):
        doc = json.loads(state.read_text())
        ids = {e.get("job_id") for e in doc.get("entries", {}).values()} | {doc.get("study", {}).get("collect_job")}
        subprocess.run(["scancel", *sorted(i for i in ids if i)], capture_output=True)


def study_folder(runs: Path, name: str) -> Path:
    (study,) = (runs / "ablations" / name).iterdir()
    return study


@pytest.mark.slow
def test_an_ablation_on_slurm_collects_the_table_a_local_run_writes(slurm_cluster, tmp_path):
    config_dir = ["--config-dir", str(write_ablation(tmp_path / "cfg", "rc_three", RC_THREE))]
    try:
        slurm = salseg(*config_dir, "ablate", "rc_three", *LAUNCHER, "launcher.wait=true", *TINY_RC,
                       f"runs_dir={tmp_path / 'slurm'}", timeout=400)
    finally:
        cancel_study_jobs(tmp_path / "slurm", "rc_three")
    assert slurm.returncode == 0, slurm.stdout[-3000:] + slurm.stderr[-3000:]
    jobs = submitted_jobs(slurm.stdout)
    assert list(jobs) == ["rc", "rc_no_spatial", "rc_strong_spatial", "collect"], slurm.stdout
    assert len(set(jobs.values())) == 4  # each variant its own job, then the collect job
    for variant, job_id in jobs.items():
        assert [r[1:] for r in sacct_rows(job_id)] == [[f"rc_three:{variant}", "COMPLETED", "0:0"]]

    local = salseg(*config_dir, "ablate", "rc_three", *TINY_RC, f"runs_dir={tmp_path / 'local'}")
    assert local.returncode == 0, local.stderr[-3000:]
    tables = [list(csv.reader(open(study_folder(tmp_path / where, "rc_three") / "table.csv")))
              for where in ("slurm", "local")]
    assert [r[0] for r in tables[0]] == ["variant", "rc", "rc_no_spatial", "rc_strong_spatial"]
    assert tables[0] == tables[1]  # the same table, to the last digit written

    study = study_folder(tmp_path / "slurm", "rc_three")
    collect = salseg(*config_dir, "collect", "rc_three", "--study", str(study))
    assert collect.returncode == 0, collect.stdout + collect.stderr
    for variant in ("rc", "rc_no_spatial", "rc_strong_spatial"):
        (line,) = [ln for ln in collect.stdout.splitlines() if ln.split()[:1] == [variant]]
        assert line.split()[1:4] == ["complete", jobs[variant], str(study / "slurm" / f"{jobs[variant]}_0_log.out")]


def test_a_launcher_job_killed_with_term_is_requeued_and_ends_at_max_steps(slurm_cluster, tmp_path):
    config_dir = ["--config-dir", str(write_ablation(tmp_path / "cfg", "menet_one",
                                                     "base: menet_shapes\nvariants:\n  menet: {}\n"))]
    runs = tmp_path / "runs"
    launch = salseg(*config_dir, "ablate", "menet_one", *LAUNCHER, *TINY_MENET, f"runs_dir={runs}")
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
    jobs = submitted_jobs(launch.stdout)
    job_id, log = jobs["menet"], study_folder(runs, "menet_one") / "slurm" / f"{jobs['menet']}_0_log.out"
    try:
        wait_until(lambda: list(runs.glob("menet_shapes/*/checkpoints/last.ckpt")), 240,
                   lambda: f"no checkpoint after 240 s; job {job_id} log:\n{log.read_text() if log.exists() else ''}",
                   every=0.05)
        subprocess.run(["scancel", "--signal=TERM", "--full", job_id], check=True)
        wait_until(lambda: not in_queue(job_id) and not in_queue(jobs["collect"]), 300,
                   lambda: f"jobs {jobs} still queued:\n{log.read_text()}", 1)
    finally:
        subprocess.run(["scancel", job_id, jobs["collect"]], capture_output=True)
    text = log.read_text()
    saved = [int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("[salseg] SIGTERM: saved")]
    assert len(saved) == 1 and 0 < saved[0] < MAX_STEPS, text[-3000:]
    assert f"[salseg] SIGTERM: scontrol requeue {job_id}: requeued" in text
    assert f"[salseg] menet: restart 1 of job {job_id}" in text
    # one row per run: the requeued one (PENDING, not FAILED: no batch shell or srun died of the TERM), then the last
    assert [r[2:] for r in sacct_rows(job_id)] == [["PENDING", "0:0"], ["COMPLETED", "0:0"]], sacct_rows(job_id)
    assert sacct_rows(jobs["collect"])[-1][2:] == ["COMPLETED", "0:0"]
    entry = json.loads((study_folder(runs, "menet_one") / "plan_state.json").read_text())["entries"]["menet"]
    run_dir = Path(entry["run_dir"])
    assert entry["job_id"] == job_id
    assert _ckpt_step(run_dir / "checkpoints" / "last.ckpt") == UNINTERRUPTED
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "complete"


@pytest.mark.slow  # ~30 s on the cluster: `make test` keeps the launcher's own TERM test
def test_a_ddp_variant_runs_as_one_srun_job_of_two_tasks(slurm_cluster, tmp_path):
    # trainer=ddp on 2 CPU processes: the launcher asks for --ntasks-per-node=2 and srun starts both; Lightning's
    # SLURMEnvironment reads their ranks from SLURM (gloo), and the run folder is named after the job
    from test_training_faults import tiny

    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()
    if not cpus or int(cpus[0].rstrip("+")) < 2:
        pytest.skip(f"the DDP job needs 2 CPUs on the node; sinfo says {cpus}")
    config_dir = ["--config-dir", str(write_ablation(tmp_path / "cfg", "menet_ddp",
                                                     "base: menet_shapes\nvariants:\n  ddp: {}\n"))]
    runs = tmp_path / "runs"
    try:
        got = salseg(*config_dir, "ablate", "menet_ddp", *LAUNCHER, "launcher.wait=true",
                     *tiny(train_size=32, epochs=1, batch=4, test_size=5), "trainer=ddp", "trainer.accelerator=cpu",
                     "trainer.devices=2", f"runs_dir={runs}", timeout=300)
    finally:
        cancel_study_jobs(runs, "menet_ddp")
    assert got.returncode == 0, got.stdout[-3000:] + got.stderr[-3000:]
    job_id = submitted_jobs(got.stdout)["ddp"]
    slurm = study_folder(runs, "menet_ddp") / "slurm"
    assert "#SBATCH --ntasks-per-node=2" in (slurm / f"{job_id}_submission.sh").read_text()
    for rank in (0, 1):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in (slurm / f"{job_id}_{rank}_log.err").read_text()
    assert [r[2:] for r in sacct_rows(job_id)] == [["COMPLETED", "0:0"]]
    run_dir = runs / "menet_shapes" / f"slurm-{job_id}"
    assert _ckpt_step(run_dir / "checkpoints" / "last.ckpt")[0] == 4  # 32 images over 2 processes x batch 4
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "complete" and doc["n_images"] == {"shapes": 5}  # no test image lost or repeated
