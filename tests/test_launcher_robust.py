"""`salseg robust NAME launcher=slurm` without a cluster (issue 17): a robustness study is one job, a comparison's
studies one job each then a collect job; the jobs, run in this process by test_launcher's stand-in for submitit's
executor, write what a local `salseg robust` writes; a failed entry makes the collect step exit 1 naming it, and
--resume submits only that entry again."""

import json
import signal
from pathlib import Path

import pytest
from launch_support import FakeExecutor, sacct_rows, salseg

import salseg.config as config
import salseg.studies.launch as launch
from salseg.cli import main
from salseg.config import ConfigError
from salseg.studies.launch import launch_robustness, load_launcher

SMALL = ["data.num_workers=0", "data.eval_batch_size=4", "logger=csv", "cost=false"]
VARIANCES = "0.01,0.1"
BOTH = "compare: [rc_a, rc_b]\noverrides: {data.test: {shapes: {dataset: shapes, split: test, size: 3}}}\n"


@pytest.fixture
def robust(tmp_path, monkeypatch):
    """Two Region Contrast settings and a comparison of them in a config folder of their own; no SLURM queue."""
    exp_dir = tmp_path / "experiments"
    (exp_dir / "comparisons").mkdir(parents=True)
    rc = (config.EXPERIMENT_DIR / "rc_shapes.yaml").read_text()
    (exp_dir / "rc_a.yaml").write_text(rc)
    (exp_dir / "rc_b.yaml").write_text(rc + "\nmodel: {sigma_s2: 0.05}\n")
    (exp_dir / "comparisons" / "both.yaml").write_text(BOTH)
    monkeypatch.setattr(config, "EXPERIMENT_DIR", exp_dir)
    monkeypatch.setattr(launch, "active_jobs", lambda ids: {})  # no SLURM queue here
    monkeypatch.setenv("SALSEG_REQUEUE_ON_TERM", "0")  # a job sets these in its own process
    usr2 = signal.getsignal(signal.SIGUSR2)
    yield tmp_path
    signal.signal(signal.SIGUSR2, usr2)


def submit(name, runs, executor, *extra, resume=False):
    launcher = load_launcher(["launcher=slurm", "launcher.partition=debug"])
    return launch_robustness(name, [*SMALL, f"runs_dir={runs}", *extra], launcher, resume=resume,
                             variances=VARIANCES, executor=executor)


def local(name, runs, *extra):
    assert main(["robust", name, "--variances", VARIANCES, *SMALL, f"runs_dir={runs}", *extra]) == 0


def texts(folder: Path) -> dict[str, str]:
    return {f: (folder / f).read_text() for f in ("table.csv", "f_vs_noise.csv")}


def test_one_experiment_is_one_job_whose_run_folder_holds_the_local_outputs(robust, monkeypatch, capsys):
    executor = FakeExecutor(robust / "slurm-logs")
    assert submit("rc_a", robust / "runs", executor, "data.test.shapes.size=4") == 0
    ((params, _, _),) = executor.submitted  # one job, no collect job
    assert params["job_name"] == "robust-rc_a:rc_a" and params["partition"] == "debug"
    assert (params["nodes"], params["ntasks_per_node"], params["cpus_per_task"], params["time"]) == (1, 1, 1, 60)
    assert "gpus_per_node" not in params and "dependency" not in params
    runs = robust / "runs" / "rc_a"
    (study,) = [p.parent for p in runs.glob("*/plan_state.json")]
    assert "robustness rc_a: rc_a  job 100  log" in capsys.readouterr().out

    run_dir = Path(executor.run()["robust-rc_a:rc_a"])
    assert run_dir.parent == runs and (run_dir / "robustness" / "f_vs_noise.png").is_file()
    doc = json.loads((study / "plan_state.json").read_text())
    assert doc["study"]["kind"] == "robustness" and doc["entries"]["rc_a"]["run_dir"] == str(run_dir)
    assert doc["entries"]["rc_a"]["job_id"] == "100"

    local("rc_a", robust / "local", "data.test.shapes.size=4")
    (local_run,) = (robust / "local" / "rc_a").iterdir()
    assert texts(run_dir / "robustness") == texts(local_run / "robustness")
    assert "| shapes | AWGN |" in (run_dir / "robustness" / "table.md").read_text()

    assert main(["collect", "rc_a", "--study", str(study)]) == 0  # the state table of a robustness study
    out = capsys.readouterr().out
    assert "rc_a     complete  100" in out and f"outputs in {run_dir / 'robustness'}" in out
    monkeypatch.chdir(robust)  # runs_dir's default, runs/, is this folder's: `salseg collect rc_a` finds the study
    assert main(["collect", "rc_a"]) == 0 and f"robustness rc_a: runs/rc_a/{study.name}\n" in capsys.readouterr().out
    assert main(["collect", "rc_nope"]) == 2
    assert "rc_nope" in capsys.readouterr().err


def test_a_comparison_is_a_job_per_entry_and_a_collect_job_writing_the_local_table(robust, capsys):
    executor = FakeExecutor(robust / "slurm-logs")
    assert submit("both", robust / "runs", executor) == 0
    names = [p["job_name"] for p, _, _ in executor.submitted]
    assert names == ["robust-both:rc_a", "robust-both:rc_b", "robust-both:collect"]
    assert executor.submitted[2][0]["dependency"] == "afterany:100:101"
    assert executor.run()["robust-both:collect"] == 0
    (study,) = [p.parent for p in (robust / "runs" / "both").glob("*/plan_state.json")]

    local("both", robust / "local")
    (local_out,) = (robust / "local" / "both").glob("*/robustness")
    assert texts(study / "robustness") == texts(local_out)
    doc = json.loads((study / "robustness" / "results.json").read_text())
    assert doc["compare"] == ["rc_a", "rc_b"] and doc["table"] == json.loads(
        (local_out / "results.json").read_text())["table"]


def test_a_failed_entry_makes_collect_exit_1_naming_it_and_resume_submits_only_it(robust, capsys):
    executor = FakeExecutor(robust / "slurm-logs")
    assert submit("both", robust / "runs", executor) == 0
    codes = executor.run(skip=("rc_b",))  # rc_b's job failed; the collect job still ran (afterany)
    assert codes["robust-both:collect"] == 1
    out = capsys.readouterr().out
    assert "rc_b     failed    101" in out
    assert "not complete: rc_b (failed); the table holds the 1 complete entry" in out
    (study,) = [p.parent for p in (robust / "runs" / "both").glob("*/plan_state.json")]
    methods = {line.split(",")[0] for line in (study / "robustness" / "table.csv").read_text().splitlines()[1:]}
    assert methods == {"rc_a"}
    assert main(["collect", "both", "--study", str(study)]) == 1

    again = FakeExecutor(robust / "slurm-logs", first_id=200)
    assert submit("both", robust / "runs", again, resume=True) == 0
    assert [p["job_name"] for p, _, _ in again.submitted] == ["robust-both:rc_b", "robust-both:collect"]
    assert "entry 'rc_a': complete in" in capsys.readouterr().out
    assert again.run()["robust-both:collect"] == 0
    methods = {line.split(",")[0] for line in (study / "robustness" / "table.csv").read_text().splitlines()[1:]}
    assert methods == {"rc_a", "rc_b"}


def test_print_config_resume_and_no_sbatch(robust, monkeypatch, capsys):
    assert main(["robust", "rc_a", "launcher=slurm", "launcher.timeout_min=30", "--print-config",
                 "data.test.shapes.size=4"]) == 0
    out = capsys.readouterr().out
    assert "kind: slurm" in out and "# job robust-rc_a:rc_a" in out and "time: 30" in out
    assert "shapes@awgn=0.01:" in out  # the study's test copies
    assert main(["robust", "rc_a", "--resume"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("salseg: error: --resume: a local robustness study runs in one go")
    assert main(["robust", "rc_a", "launcher=slurm", "launcher.partiton=debug"]) == 2
    assert "'launcher.partiton'" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(robust / "empty"))
    assert main(["robust", "both", "launcher=slurm", f"runs_dir={robust / 'runs'}"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "no `sbatch` on PATH" in err


# ------------------------------------------------------------------------------------------ against a real SLURM
@pytest.mark.slow
@pytest.mark.usefixtures("slurm_cluster")
def test_a_comparison_on_slurm_writes_the_table_a_local_run_writes(tmp_path):
    """The localhost cluster (conftest.py's slurm_cluster: started when absent, stopped only then; skips with
    the reason where it cannot run)."""
    cfg = tmp_path / "cfg" / "experiments"
    (cfg / "comparisons").mkdir(parents=True)
    rc = (config.EXPERIMENT_DIR / "rc_shapes.yaml").read_text()
    (cfg / "rc_a.yaml").write_text(rc)
    (cfg / "rc_b.yaml").write_text(rc + "\nmodel: {sigma_s2: 0.05}\n")
    (cfg / "comparisons" / "both.yaml").write_text(BOTH)
    args = ["--config-dir", str(tmp_path / "cfg"), "robust", "both", "--variances", VARIANCES, *SMALL]
    slurm = salseg(*args, "launcher=slurm", "launcher.partition=debug", "launcher.timeout_min=10",
                   "launcher.wait=true", f"runs_dir={tmp_path / 'slurm'}")
    assert slurm.returncode == 0, slurm.stdout[-3000:] + slurm.stderr[-3000:]
    jobs = {w[3]: w[w.index("job") + 1] for w in map(str.split, slurm.stdout.splitlines())
            if w[:3] == ["[salseg]", "robustness", "both:"] and "job" in w}
    assert list(jobs) == ["rc_a", "rc_b", "collect"], slurm.stdout
    for entry, job_id in jobs.items():
        assert [r[1:] for r in sacct_rows(job_id)] == [[f"robust-both:{entry}", "COMPLETED", "0:0"]]
    local = salseg(*args, f"runs_dir={tmp_path / 'local'}")
    assert local.returncode == 0, local.stderr[-3000:]
    (study,) = [p.parent for p in (tmp_path / "slurm" / "both").glob("*/plan_state.json")]
    (local_out,) = (tmp_path / "local" / "both").glob("*/robustness")
    assert texts(study / "robustness") == texts(local_out)


def test_a_test_set_dropped_with_null_is_not_studied():
    """quickstart's gd_shapes entry drops its experiment's shapes_single test set (data.test.shapes_single: null),
    as the DataModule reads it: the study leaves it out instead of refusing the entry."""
    from salseg.robustness import named_test_specs, robustness_config

    spec = {"dataset": "shapes", "split": "test", "size": 3}
    assert named_test_specs({"shapes": spec, "shapes_single": None}) == {"shapes": spec}
    _, study = robustness_config("gd_shapes", ["data.test={shapes: {dataset: shapes, split: test, size: 3}, "
                                               "shapes_single: null}"], variances="0.01")
    assert study["datasets"] == ["shapes"]  # and gd_shapes' own `shapes: null` is dropped the same way
    with pytest.raises(ConfigError, match=r"data.test names no test dataset \(every one is null\)"):
        robustness_config("gd_shapes", ["data.test.shapes_single=null"], variances="0.01")


def test_resume_tells_a_robustness_study_from_a_comparison_study_of_the_same_name(tmp_path, capsys):
    """Both live in runs/<NAME>/<timestamp>/: each --resume picks the newest of its own kind."""
    from salseg.studies.launch import _robust_folder
    from salseg.studies.run import study_folder

    parent = tmp_path / "runs" / "both"
    for stamp, kind in (("20260101-000000", "robustness"), ("20260102-000000", "comparison"),
                        ("20260103-000000", None)):  # None: a local comparison (no study block)
        (parent / stamp).mkdir(parents=True)
        study = {"study": {"kind": kind, "name": "both"}} if kind else {}
        (parent / stamp / "plan_state.json").write_text(json.dumps({"entries": {}, **study}))
    assert study_folder(parent, resume=True) == parent / "20260103-000000"
    assert _robust_folder(parent, resume=True) == parent / "20260101-000000"
    (parent / "20260103-000000" / "plan_state.json").unlink()
    (parent / "20260102-000000" / "plan_state.json").unlink()
    assert study_folder(parent, resume=True).name != "20260101-000000"  # a new one, not the robustness study
    assert "no earlier study" in capsys.readouterr().out


def test_a_requeued_job_continues_its_recorded_run_from_last_ckpt(robust, monkeypatch):
    """A preempted study's job (SIGTERM in training: last.ckpt saved, job requeued) records the run it started;
    the restarted job continues that run from its last.ckpt (as the ablation jobs do)."""
    import os

    import salseg.robustness as robustness
    from salseg import tracking
    from salseg.robustness import RobustnessResult
    from salseg.studies.launch import robust_job, robust_plan

    _, plan, _ = robust_plan("rc_a", [*SMALL, f"runs_dir={robust / 'runs'}"], variances=VARIANCES)
    cfg, settings = plan["rc_a"]
    study, interrupted = robust / "study", robust / "runs" / "rc_a" / "interrupted"
    (interrupted / "checkpoints").mkdir(parents=True)
    seen = []

    def preempted(name, cfg, study, start):  # the runner made its folder, then SIGTERM stopped the training
        seen.append(cfg.ckpt_path)
        os.environ[tracking.RUN_DIR_ENV] = str(interrupted)
        (interrupted / "checkpoints" / "last.ckpt").write_bytes(b"step 3")
        raise SystemExit("SIGTERM")

    monkeypatch.delenv(tracking.RUN_DIR_ENV, raising=False)
    monkeypatch.setattr(robustness, "_run_one", preempted)
    with pytest.raises(SystemExit):
        robust_job(str(study), "rc_a", cfg, settings)
    assert json.loads((study / "plan_state.json").read_text())["entries"]["rc_a"]["run_dir"] == str(interrupted)

    def restarted(name, cfg, study, start):
        seen.append(cfg.ckpt_path)
        return RobustnessResult(out_dir=robust / "new" / "robustness", run_dir=robust / "new", table={}, curves={})

    monkeypatch.setattr(robustness, "_run_one", restarted)
    assert robust_job(str(study), "rc_a", cfg, settings) == str(robust / "new")
    assert seen == [None, str(interrupted / "checkpoints" / "last.ckpt")]
    assert json.loads((study / "plan_state.json").read_text())["entries"]["rc_a"]["run_dir"] == str(robust / "new")
