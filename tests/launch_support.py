"""What the launcher tests share (tests/test_launcher.py, test_launcher_robust.py, test_slurm.py): a stand-in for
submitit's SLURM executor, and the helpers of the real localhost cluster (`.ci/slurm_localhost.sh`; its fixture
``slurm_cluster`` is in conftest.py)."""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "slurm_localhost.sh"
SKIP_EXIT = 3  # the script's "cannot run here" status, with one "slurm_localhost: SKIP: <reason>" line


def skip_reason(stdout: str) -> str:
    """The script's "slurm_localhost: SKIP: <reason>" line (the last line when there is none)."""
    lines = [ln for ln in stdout.splitlines() if "SKIP:" in ln] or stdout.strip().splitlines()[-1:] or ["no output"]
    return lines[-1]


def sacct_rows(job_id: str) -> list[list[str]]:
    """One [jobid, jobname, state, exitcode] per run of the job (a requeued job has one row per run)."""
    out = subprocess.run(["sacct", "-c", "-P", "-n", "-o", "jobid,jobname,state,exitcode", "-j", str(job_id)],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def in_queue(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", str(job_id)], capture_output=True, text=True).stdout
    return str(job_id) in out.split()


def wait_until(what, timeout: float, message: str, every: float = 0.2):
    deadline = time.time() + timeout
    while not (got := what()):
        assert time.time() < deadline, message()
        time.sleep(every)
    return got


def salseg(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "salseg", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


class FakeJob:
    def __init__(self, job_id: str, folder: Path):
        self.job_id = job_id
        self.paths = type("Paths", (), {"stdout": folder / f"{job_id}_0_log.out",
                                        "stderr": folder / f"{job_id}_0_log.err"})()


class FakeExecutor:
    """submitit.SlurmExecutor's two calls; the submitted functions run later, in order, as SLURM would."""

    def __init__(self, folder: Path, first_id: int = 100):
        self.folder, self.next_id = folder, first_id
        self.params: dict = {}
        self.submitted: list[tuple[dict, object, tuple]] = []

    def update_parameters(self, **params):
        self.params = {**self.params, **params}

    def submit(self, fn, *args):
        job = FakeJob(str(self.next_id), self.folder)
        self.next_id += 1
        # as submitit's executor: a job's parameters are those set so far (None: unset)
        self.submitted.append(({k: v for k, v in self.params.items() if v is not None}, fn, args))
        return job

    def run(self, skip=()):
        """Run every submitted job's function (SLURM's part), but the variants in ``skip`` (a failed job)."""
        codes = {}
        for params, fn, args in self.submitted:
            if params["job_name"].split(":")[1] not in skip:
                try:
                    codes[params["job_name"]] = fn(*args)
                except SystemExit as exit_:
                    codes[params["job_name"]] = exit_.code
        return codes
