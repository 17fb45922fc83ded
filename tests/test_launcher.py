"""launcher=slurm without a cluster (issue 17): the launcher config group, the resources of a variant's job, the
submit plan (dependencies, shared runs, job names) against a stand-in for submitit's executor whose jobs then run
in this process, resume, and `salseg collect` on SLURM-style and local study folders. tests/test_slurm.py runs
the same against a real SLURM."""

import csv
import json
import signal
from pathlib import Path

import pytest
from launch_support import FakeExecutor
from omegaconf import OmegaConf

import salseg.config as config
import salseg.studies.launch as launch
from salseg.cli import main
from salseg.config import ConfigError
from salseg.studies.launch import job_resources, load_launcher

RC = ("defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n"
      "data: {test: {shapes: {dataset: shapes, split: test, size: 3}}, num_workers: 0}\n")
# b tests a's checkpoint (a dependent job); c2 is another row of c's run (one job for both)
ABLATION = ("base: rc_tiny\nvariants:\n  a: {}\n  b: {checkpoint_of: a, model.sigma_s2: 0.1}\n"
            "  c: {model.sigma_s2: 0.1}\n  c2: {model.sigma_s2: 0.1, map: saliency}\n")


@pytest.fixture
def study(tmp_path, monkeypatch):
    exp_dir = tmp_path / "experiments"
    (exp_dir / "ablations").mkdir(parents=True)
    (exp_dir / "rc_tiny.yaml").write_text(RC)
    (exp_dir / "ablations" / "four.yaml").write_text(ABLATION)
    monkeypatch.setattr(config, "EXPERIMENT_DIR", exp_dir)
    monkeypatch.setattr(config, "ABLATION_DIR", exp_dir / "ablations")
    monkeypatch.setattr(launch, "active_jobs", lambda ids: {})  # no SLURM queue here
    # a job sets these in its own process; here they must not outlive the test
    monkeypatch.setenv("SALSEG_REQUEUE_ON_TERM", "0")
    usr2 = signal.getsignal(signal.SIGUSR2)
    yield tmp_path
    signal.signal(signal.SIGUSR2, usr2)


def ablate_slurm(tmp_path, executor, *extra, resume=False):
    launcher = load_launcher(["launcher=slurm", "launcher.partition=debug"])
    from salseg.studies.plan import ablation_plan, load_ablation

    return launch.launch_study("ablation", "four", ablation_plan(load_ablation("four")),
                               [f"runs_dir={tmp_path / 'runs'}", *extra], str(tmp_path / "runs"),
                               Path("ablations") / "four", resume, launcher, executor=executor)


def rows(folder: Path) -> list[dict]:
    return list(csv.DictReader(open(folder / "table.csv")))


# ------------------------------------------------------------------------------------------ the config group
def test_the_launcher_group_defaults_to_local_and_takes_overrides():
    assert load_launcher([]).kind == "local"
    cfg = load_launcher(["launcher=slurm", "launcher.partition=gpu", "launcher.timeout_min=30",
                         "launcher.collect.mem_gb=2", "launcher.setup=[module load cuda]"])
    assert (cfg.kind, cfg.partition, cfg.timeout_min, cfg.collect.mem_gb) == ("slurm", "gpu", 30, 2)
    assert list(cfg.setup) == ["module load cuda"] and cfg.wait is False
    with pytest.raises(ConfigError, match=r"unknown launcher key 'launcher.partiton' for launcher=slurm; known"):
        load_launcher(["launcher=slurm", "launcher.partiton=gpu"])
    with pytest.raises(ConfigError, match=r"unknown launcher key 'launcher.partition' for launcher=local"):
        load_launcher(["launcher.partition=gpu"])


def test_ablate_print_config_shows_the_launcher_and_each_job(capsys):
    assert main(["ablate", "rc_spatial", "launcher=slurm", "launcher.partition=debug", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "partition: debug" in out and "# job rc_spatial:rc_slic" in out and "ntasks_per_node: 1" in out
    assert main(["ablate", "rc_spatial", "launcher=slurm", "launcher.partiton=debug", "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'launcher.partiton'" in err[0]


def test_a_launcher_on_one_experiment_is_one_line(capsys):
    assert main(["run", "rc_shapes", "launcher=slurm", "--print-config"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("salseg: error: launcher=slurm: a launcher runs a study's variants")


def test_job_resources_follow_the_trainer_config():
    slurm = load_launcher(["launcher=slurm", "launcher.mem_gb=32", "launcher.account=lab"])
    gpu = {"trainer": {"accelerator": "gpu", "devices": 4, "num_nodes": 2}, "data": {"num_workers": 5}}
    assert job_resources(gpu, slurm, "v") == {
        "nodes": 2, "ntasks_per_node": 4, "gpus_per_node": 4, "cpus_per_task": 6, "time": 60, "mem": "32GB",
        "account": "lab", "additional_parameters": {"kill_on_invalid_dep": "yes"}, "use_srun": True}
    cpu_ddp = job_resources({"trainer": {"accelerator": "cpu", "devices": 2}}, slurm, "v")
    assert (cpu_ddp["nodes"], cpu_ddp["ntasks_per_node"], "gpus_per_node" in cpu_ddp) == (1, 2, False)
    assert cpu_ddp["use_srun"] is True  # several processes: srun starts them
    one = job_resources({"trainer": {"accelerator": "cpu", "devices": 1}}, slurm, "v")
    assert one["use_srun"] is False and one["ntasks_per_node"] == 1  # one: python in the batch script itself
    assert one["additional_parameters"]["signal"] == "B:USR2@90"  # the time-out warning reaches that process
    all_gpus = {"trainer": {"accelerator": "gpu", "devices": -1, "num_nodes": 1}}
    with pytest.raises(ConfigError, match="variant 'x'.*set launcher.gpus_per_node"):
        job_resources(all_gpus, slurm, "variant 'x'")
    given = OmegaConf.merge(slurm, {"gpus_per_node": 8, "cpus_per_task": 4})
    assert job_resources(all_gpus, given, "v")["ntasks_per_node"] == 8


# ------------------------------------------------------------------------------------------ submit, run, collect
def test_slurm_plan_dependencies_shared_runs_and_the_collect_job(study, capsys):
    tmp_path = study
    executor = FakeExecutor(tmp_path / "slurm-logs")
    assert ablate_slurm(tmp_path, executor) == 0
    names = [p["job_name"] for p, _, _ in executor.submitted]
    assert names == ["four:a", "four:b", "four:c", "four:collect"]  # c2 shares c's run: one job
    by_name = {p["job_name"]: p for p, _, _ in executor.submitted}
    assert by_name["four:b"]["dependency"] == "afterok:100"  # b tests a's checkpoint
    assert "dependency" not in by_name["four:a"] and "dependency" not in by_name["four:c"]
    assert by_name["four:collect"]["dependency"] == "afterany:100:101:102"
    assert by_name["four:a"]["partition"] == "debug" and by_name["four:collect"]["mem"] == "4GB"
    (folder,) = (tmp_path / "runs" / "ablations" / "four").iterdir()
    entries = json.loads((folder / "plan_state.json").read_text())["entries"]
    assert {e: got["job_id"] for e, got in entries.items()} == {"a": "100", "b": "101", "c": "102", "c2": "102"}
    assert entries["a"]["stdout"].endswith("100_0_log.out") and entries["a"]["stderr"].endswith("100_0_log.err")
    out = capsys.readouterr().out
    assert "[salseg] ablation four: c2  job 102  log" in out and "collect  job 103" in out

    codes = executor.run()  # the jobs, as SLURM runs them: b reads a's run folder from plan_state.json
    assert codes["four:collect"] == 0
    entries = json.loads((folder / "plan_state.json").read_text())["entries"]
    assert entries["c2"]["run_dir"] == entries["c"]["run_dir"]
    b_config = (Path(entries["b"]["run_dir"]) / "config.yaml").read_text()
    assert f"ckpt_path: {entries['a']['run_dir']}/checkpoints/last.ckpt" in b_config

    # the same study run locally: the same table
    assert main(["ablate", "four", f"runs_dir={tmp_path / 'local'}"]) == 0
    (local,) = (tmp_path / "local" / "ablations" / "four").iterdir()
    assert rows(folder) == rows(local) and [r["variant"] for r in rows(folder)] == ["a", "b", "c", "c2"]
    assert (folder / "pr_curves.png").is_file() and (folder / "results.json").is_file()

    # and `salseg collect` over the local study rewrites its table unchanged
    before = (local / "table.md").read_text()
    assert main(["collect", "four", "--study", str(local)]) == 0
    assert (local / "table.md").read_text() == before
    assert "a        complete" in capsys.readouterr().out


def test_resume_skips_complete_variants_leaves_queued_jobs_and_collect_lists_the_failed(study, monkeypatch,
                                                                                          capsys):
    tmp_path = study
    executor = FakeExecutor(tmp_path / "slurm-logs")
    assert ablate_slurm(tmp_path, executor) == 0
    codes = executor.run(skip=("c",))  # c's job failed; the collect job still ran (afterany)
    assert codes["four:collect"] == 1
    (folder,) = (tmp_path / "runs" / "ablations" / "four").iterdir()
    assert [r["variant"] for r in rows(folder)] == ["a", "b"]  # the completed ones
    assert main(["collect", "four", "--study", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "c        failed    102" in out and "not complete: c (failed), c2 (failed)" in out

    again = FakeExecutor(tmp_path / "slurm-logs", first_id=200)
    monkeypatch.setattr(launch, "active_jobs", lambda ids: {"102": "PENDING"} if "102" in ids else {})
    assert ablate_slurm(tmp_path, again, resume=True) == 0  # c's job is still queued: left alone
    assert [p["job_name"] for p, _, _ in again.submitted] == ["four:collect"]
    out = capsys.readouterr().out
    assert "variant 'a': complete in" in out and "variant 'c': job 102 is still PENDING, left alone" in out

    monkeypatch.setattr(launch, "active_jobs", lambda ids: {})
    again = FakeExecutor(tmp_path / "slurm-logs", first_id=300)
    assert ablate_slurm(tmp_path, again, resume=True) == 0
    assert [p["job_name"] for p, _, _ in again.submitted] == ["four:c", "four:collect"]
    assert again.run()["four:collect"] == 0
    assert [r["variant"] for r in rows(folder)] == ["a", "b", "c", "c2"]
    entries = json.loads((folder / "plan_state.json").read_text())["entries"]
    assert entries["c"]["job_id"] == entries["c2"]["job_id"] == "300"


# ------------------------------------------------------------------------------------------ bad input
def test_no_sbatch_on_path_is_one_line(study, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(study / "empty"))
    code = main(["ablate", "four", "launcher=slurm", f"runs_dir={study / 'runs'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["salseg: error: launcher=slurm: no `sbatch` on PATH (is this a SLURM login "
                                 "node?); run the study locally with launcher=local"]
    assert not (study / "runs" / "ablations" / "four").exists()


def test_without_submitit_the_slurm_launcher_names_its_extra(study, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    assert main(["ablate", "four", "launcher=slurm", f"runs_dir={study / 'runs'}"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("salseg: error: launcher=slurm needs submitit") and "pip install 'salseg[slurm]'" in err


def test_sbatch_refusing_a_job_names_the_variant(study, capsys):
    FailedJobError = pytest.importorskip("submitit.core.utils").FailedJobError

    class Refusing(FakeExecutor):
        def submit(self, fn, *args):
            raise FailedJobError("sbatch: error: invalid partition specified: nope\n"
                                 "sbatch: error: Batch job submission failed: Invalid partition name specified")

    with pytest.raises(launch.LaunchError) as err:
        ablate_slurm(study, Refusing(study / "slurm-logs"))
    assert str(err.value) == ("ablation four, variant 'a': sbatch refused the job: sbatch: error: invalid partition "
                              "specified: nope sbatch: error: Batch job submission failed: Invalid partition name "
                              "specified")


# ------------------------------------------------------------------------------------------ preemption
def test_sigterm_in_training_saves_last_ckpt_and_a_resumed_run_ends_at_the_full_step_count(tmp_path):
    """`scancel --signal=TERM` (or a preemption) mid-training: Lightning stops after the current batch and
    salseg.studies.preemption writes checkpoints/last.ckpt at that step; --resume ends where an uninterrupted
    run ends (2 epochs x 16 batches = 32 steps)."""
    import os
    import subprocess
    import sys
    import time

    import torch

    overrides = [f"runs_dir={tmp_path}", "logger=csv", "data.train.size=128", "data.train.cache=false",
                 "data.val.size=8", "data.test.shapes.size=4", "data.image_size=32", "data.batch_size=8",
                 "data.num_workers=0", "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "cost=false"]
    proc = subprocess.Popen([sys.executable, "-m", "salseg", "run", "menet_shapes", *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    for line in proc.stdout:  # Lightning's model summary: fit has started
        lines.append(line)
        if "Modules in eval mode" in line:
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stdout.readlines()
    proc.wait(timeout=120)
    assert proc.returncode == 143, "".join(lines)  # like a process killed by SIGTERM, not 0 as if it had finished
    assert "salseg: stopped by SIGTERM" in lines[-1] and "--resume" in lines[-1]
    (run,) = (tmp_path / "menet_shapes").iterdir()
    assert not (run / "metrics.json").exists()  # not complete
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert 0 < saved["global_step"] < 32, "".join(lines)
    assert f"SIGTERM: saved {run / 'checkpoints' / 'last.ckpt'} at step {saved['global_step']}" in "".join(lines)

    assert main(["run", "menet_shapes", *overrides, "--resume"]) == 0
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == 32 and json.loads((run / "metrics.json").read_text())["status"] == "complete"
