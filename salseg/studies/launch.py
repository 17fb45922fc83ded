"""The study launchers (``launcher=local|slurm``, ``configs/launcher/``; README "Studies on SLURM").

``local`` (the default) runs a study's variants one after another in this process (:mod:`salseg.studies.run`).
``slurm`` submits each variant as its own SLURM job through submitit, with the resources of the variant's trainer
config, then a collect job (``afterany``) that writes the study's table (:mod:`salseg.studies.collect`):

* one job per run: variants that share a run (same overrides, another map of it) are submitted once;
* a ``checkpoint_of`` / ``use_checkpoint_of`` variant waits (``afterok``) for the job of the variant it uses and
  reads that run's folder from ``plan_state.json`` when it starts (only then is the folder known);
* every job calls :func:`salseg.studies.run.run_variant`, the local loop's own step, so its run folder and
  metrics.json are those of a local run; ``plan_state.json`` records each variant's job id and log paths;
* ``--resume`` reuses the newest study folder: complete variants are skipped, jobs still in the queue left alone,
  failed or never-run variants submitted again;
* preemption: a SIGTERM during training saves ``checkpoints/last.ckpt`` and requeues the job
  (:mod:`salseg.studies.preemption`); the restarted job continues the recorded run from it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from salseg import config_paths
from salseg.config import ConfigError, compose, load_group, resolve
from salseg.errors import SalsegError, import_extra
from salseg.studies.plan import Variant
from salseg.studies.run import (
    StudyState,
    comparable,
    is_complete,
    run_key,
    run_variant,
    study_folder,
    variant_overrides,
)


class LaunchError(SalsegError, RuntimeError):
    """SLURM is missing or refused a job: one line naming the variant."""


# ------------------------------------------------------------------------------------------ the launcher config
def split_launcher_overrides(overrides) -> tuple[list[str], list[str]]:
    """``(launcher overrides, the rest)``: ``launcher=NAME`` and ``launcher.<key>=value`` configure the launcher,
    every other override goes to the variants."""
    mine = [o for o in overrides if o.split("=", 1)[0] == "launcher" or o.startswith("launcher.")]
    return mine, [o for o in overrides if o not in mine]


def load_launcher(overrides) -> DictConfig:
    """``configs/launcher/<NAME>.yaml`` (``launcher=NAME``; default ``local``) with ``launcher.<key>=value``
    applied; an unknown key is one line naming it and the known keys."""
    name = "local"
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not of the form key=value (e.g. launcher=slurm)")
        key, value = o.split("=", 1)
        if key == "launcher":
            name = value
    cfg = load_group("launcher", name)
    OmegaConf.set_struct(cfg, True)
    for o in overrides:
        key, value = o.split("=", 1)
        if key == "launcher":
            continue
        sub = key.removeprefix("launcher.")
        try:
            OmegaConf.update(cfg, sub, OmegaConf.from_dotlist([f"x={value}"]).x, merge=False, force_add=False)
        except (ConfigAttributeError, ConfigKeyError) as err:
            raise ConfigError(f"unknown launcher key {key!r} for launcher={name}; known keys: "
                              f"{', '.join(str(k) for k in cfg.keys())}") from err
    if cfg.get("kind") not in ("local", "slurm"):
        raise ConfigError(f"launcher={name}: kind must be local or slurm, got {cfg.get('kind')!r}")
    return cfg


# ------------------------------------------------------------------------------------------ resources
def _devices_per_node(devices, where: str) -> int | None:
    """trainer.devices as a count (None: "all of them", -1 / "auto", which a job must be given explicitly)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    return None


def job_resources(config: dict, launcher: DictConfig, where: str) -> dict:
    """submitit SlurmExecutor parameters for one variant's run (``config``: its resolved config).

    Lightning's SLURM environment starts one process per task: on GPUs, ``--ntasks-per-node`` must equal the
    devices per node (Lightning docs, "Run on an on-prem cluster (advanced)": SLURM)."""
    trainer = config.get("trainer", {})
    accelerator = str(trainer.get("accelerator", "auto"))
    devices = _devices_per_node(trainer.get("devices", 1), where)
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and launcher.gpus_per_node)
    gpus = launcher.gpus_per_node or (devices if gpu else None)
    if gpu and not gpus:
        raise ConfigError(f"{where}: trainer.devices={trainer.get('devices')!r} on {accelerator} does not say how "
                          "many GPUs a job needs: set launcher.gpus_per_node (or trainer.devices=N)")
    tasks = launcher.tasks_per_node or (gpus if gpu else devices or 1)
    params = {
        "nodes": int(launcher.nodes or trainer.get("num_nodes", 1) or 1),
        "ntasks_per_node": int(tasks),
        "cpus_per_task": int(launcher.cpus_per_task or int(config.get("data", {}).get("num_workers", 0) or 0) + 1),
        "time": int(launcher.timeout_min),
    }
    if gpu:
        params["gpus_per_node"] = int(gpus)
    common = _common_params(launcher)
    if params["nodes"] * params["ntasks_per_node"] == 1:
        # One process: python replaces the batch shell (``exec``, see :func:`_point_executor`) instead of running
        # under srun, which answers a job-wide SIGTERM (a preemption, `scancel --signal=TERM --full`) by SIGKILLing
        # its tasks before the training saved. The time-out warning then goes to that process (``B:``, the batch
        # shell: sbatch's default signals job steps, and there are none). Several processes need srun (Lightning's
        # SLURM environment: one task per device); there only `scancel --signal=TERM` (the steps) saves.
        params["use_srun"] = False
        common["additional_parameters"]["signal"] = f"B:USR2@{SIGNAL_DELAY_S}"
    else:
        params["use_srun"] = True
    return {**params, **common}


# submitit's executor keeps the parameters of the job before: those a job may leave out are reset each time
UNSET = {"gpus_per_node": None, "mem": None, "partition": None, "account": None, "setup": None, "dependency": None}
SIGNAL_DELAY_S = 90  # submitit's default: the time-out warning comes 90 s before the limit


def _point_executor(executor, params: dict) -> None:
    """A one-process job's python replaces the batch shell (``exec``): a job-wide signal reaches the training."""
    if hasattr(executor, "python"):
        python = shlex.quote(sys.executable)
        executor.python = f"exec {python}" if params.get("use_srun") is False else python


def _common_params(launcher: DictConfig, mem_gb=None) -> dict:
    params: dict = {}
    for key in ("partition", "account"):
        if launcher.get(key):
            params[key] = str(launcher[key])
    mem = mem_gb if mem_gb is not None else launcher.get("mem_gb")
    if mem:
        params["mem"] = f"{mem}GB"
    if launcher.get("setup"):
        params["setup"] = [str(line) for line in launcher.setup]
    extra = OmegaConf.to_container(launcher.additional_parameters) if launcher.get("additional_parameters") else {}
    # a dependent job whose dependency failed is cancelled, not left pending for ever (which would also keep the
    # afterany collect job waiting)
    params["additional_parameters"] = {"kill_on_invalid_dep": "yes", **extra}
    return params


# ------------------------------------------------------------------------------------------ submission
@dataclass
class Submission:
    """What one launch submitted: entry -> job id, and the collect job's id."""

    jobs: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    collect_job: str | None = None


def slurm_executor(folder: Path):
    """submitit's SlurmExecutor writing its scripts and logs under ``folder`` (``<study>/slurm``)."""
    submitit = import_extra("submitit", "slurm", "launcher=slurm")
    if shutil.which("sbatch") is None:
        raise LaunchError("launcher=slurm: no `sbatch` on PATH (is this a SLURM login node?); "
                          "run the study locally with launcher=local")
    return submitit.SlurmExecutor(folder=folder)


def active_jobs(job_ids) -> dict[str, str]:
    """job id -> SLURM state (PENDING, RUNNING, ...) of those still in the queue (``squeue``: no accounting
    database needed); jobs that ended are absent."""
    ids = [str(j) for j in job_ids if j]
    if not ids or shutil.which("squeue") is None:
        return {}
    got: dict[str, str] = {}
    for job_id in ids:  # one call each: squeue refuses the whole list when one id has left its memory
        out = subprocess.run(["squeue", "--noheader", "--format=%i|%T", f"--jobs={job_id}"],
                             capture_output=True, text=True, timeout=60)
        for line in out.stdout.splitlines():
            jid, _, state = line.strip().partition("|")
            if jid == job_id:
                got[jid] = state
    return got


def launch_study(kind: str, name: str, plan: list[Variant], extra_overrides: list[str], runs_dir: str | None,
                 out_subdir: Path, resume: bool, launcher: DictConfig, summary=(), executor=None) -> int:
    """Submit the study's variants and its collect job; print one line per variant; return 0 (or, with
    ``launcher.wait``, the collect step's status once its job ended). ``executor``: tests pass a stand-in."""
    parent = Path(runs_dir or compose(plan[0].experiment, list(extra_overrides)).runs_dir) / out_subdir
    out = study_folder(parent.resolve(), resume)
    executor = executor or slurm_executor(out / "slurm")
    state = StudyState(out, resume)
    state.describe(kind=kind, name=name, overrides=list(extra_overrides), runs_dir=runs_dir,
                   summary=list(summary), launcher=OmegaConf.to_container(launcher))
    active = active_jobs(e.get("job_id") for e in state.entries.values()) if resume else {}
    config_dirs = [str(d.resolve()) for d in config_paths.user_dirs()]  # --config-dir, for the jobs' lookups
    got = Submission()
    first_of: dict[tuple, Variant] = {}  # run key -> the entry that runs it
    sharing: dict[str, list[str]] = {}
    for v in plan:
        if run_key(v) in first_of:
            sharing[first_of[run_key(v)].name].append(v.name)
        else:
            first_of[run_key(v)] = v
            sharing[v.name] = []
    done: set[str] = set()
    for v in first_of.values():
        where = f"{kind} {name}, variant {v.name!r}"
        refs = ([v.checkpoint_of] if v.checkpoint_of else []) + [r for _, r in v.use_checkpoint_of]
        known = state.run_dirs()
        run_dirs = {r: known.get(r, "<from its job>") for r in refs}
        config = resolve(compose(v.experiment, variant_overrides(kind, name, v, run_dirs, extra_overrides,
                                                                 runs_dir)))
        entry = state.entries.get(v.name, {})
        if all(r in done for r in refs):
            earlier = state.recorded_run(v.name, comparable(config))
            if earlier is not None and is_complete(earlier):
                print(f"[salseg] {where}: complete in {earlier}, not resubmitted")
                done.update([v.name, *sharing[v.name]])
                continue
        if entry.get("job_id") in active:
            job_id = entry["job_id"]
            print(f"[salseg] {where}: job {job_id} is still {active[job_id]}, left alone")
            got.jobs[v.name], got.logs[v.name] = job_id, entry.get("stdout", "")
            continue
        deps = sorted({got.jobs[r] for r in refs if r in got.jobs})
        # every key set each time: submitit's executor keeps the parameters of the job before
        params = {**UNSET, **job_resources(config, launcher, where), "job_name": f"{name}:{v.name}",
                  "dependency": "afterok:" + ":".join(deps) if deps else None}
        executor.update_parameters(**params)
        _point_executor(executor, params)
        job = _submit(executor, where, run_job, str(out), kind, name, v, list(extra_overrides), runs_dir,
                      tuple(sharing[v.name]), config_dirs)
        logs = {"job_id": str(job.job_id), "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
        for entry_name in (v.name, *sharing[v.name]):
            state.record(entry_name, **logs)
            got.jobs[entry_name], got.logs[entry_name] = logs["job_id"], logs["stdout"]
    for v in plan:  # one line per variant, in plan order
        if v.name in got.jobs:
            print(f"[salseg] {kind} {name}: {v.name}  job {got.jobs[v.name]}  log {got.logs[v.name]}")
    if not got.jobs:
        print(f"[salseg] {kind} {name}: every variant is complete; collecting")
        from salseg.studies.collect import collect_study

        return collect_study(out)
    job = _submit_collect(executor, launcher, f"{name}:collect", f"{kind} {name}", out, state, got, config_dirs)
    print(f"[salseg] {kind} {name}: collect  job {job.job_id}  log {job.paths.stdout}  (afterany); "
          f"study folder {out}")
    if not launcher.wait:
        return 0
    _wait_for(got.collect_job)
    from salseg.studies.collect import collect_study

    return collect_study(out, write=False)


def _submit_collect(executor, launcher: DictConfig, job_name: str, where: str, out: Path, state: StudyState,
                    got: Submission, config_dirs: list[str]):
    """Submit the study's collect job (``afterany`` on every job of ``got``, the ``launcher.collect`` resources)
    and record it in ``got`` and plan_state.json."""
    c = launcher.collect
    _point_executor(executor, {})
    executor.update_parameters(**{**UNSET, **_common_params(launcher, mem_gb=c.mem_gb), "job_name": job_name,
                                  "nodes": 1, "ntasks_per_node": 1, "use_srun": True,
                                  "cpus_per_task": int(c.cpus_per_task), "time": int(c.timeout_min),
                                  "dependency": "afterany:" + ":".join(sorted(set(got.jobs.values())))})
    job = _submit(executor, f"{where}, the collect job", collect_job, str(out), config_dirs)
    got.collect_job = str(job.job_id)
    state.describe(**{**state.study, "collect_job": got.collect_job, "collect_log": str(job.paths.stdout)})
    return job


def _wait_for(job_id: str) -> None:
    """Until the job has left the queue (``launcher.wait``)."""
    while active_jobs([job_id]):
        time.sleep(5)


def _submit(executor, where: str, fn, *args):
    """executor.submit, with sbatch's refusal (a bad partition or account) as one line naming the variant."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr too: it is in the error
            return executor.submit(fn, *args)
    except Exception as err:
        if type(err).__name__ not in ("FailedJobError", "CalledProcessError"):
            raise
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip()
                        and not line.startswith(("Traceback", "  ")))
        raise LaunchError(f"{where}: sbatch refused the job: {text}") from err


# ------------------------------------------------------------------------------------------ inside the jobs
def run_job(study: str, kind: str, name: str, v: Variant, extra_overrides: list[str], runs_dir: str | None,
            also: tuple[str, ...] = (), config_dirs: list[str] = ()) -> str:
    """One variant's job: the local loop's step (:func:`run_variant`) with the run folders recorded so far (those
    of the variants it depends on, which ended before it started), recording its own. A requeued job finds its
    interrupted run recorded and continues from its last.ckpt. Returns the run folder."""
    from salseg.studies.preemption import REQUEUE_ENV

    os.environ[REQUEUE_ENV] = "1"  # salseg.studies.preemption: a SIGTERM in training saves last.ckpt, requeues
    # submitit signals a time-out with SIGUSR2 (sbatch --signal=USR2@90) and requeues only checkpointable
    # functions; a time-out is handled as a preemption instead, by the SIGTERM path above
    signal.signal(signal.SIGUSR2, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    config_paths.set_config_dirs(list(config_dirs))
    state = StudyState(Path(study), resume=True)
    restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    if restart:
        print(f"[salseg] {v.name}: restart {restart} of job {os.environ.get('SLURM_JOB_ID')}")
    result = run_variant(kind, name, v, state.run_dirs(), extra_overrides, runs_dir, state, also)
    return str(result.run_dir)


def collect_job(study: str, config_dirs: list[str] = ()) -> int:
    """The collect job of every study kind (ablation, comparison, robustness: :func:`collect_study` tells them
    apart): its table; a study with a variant not complete makes the job fail (exit 1)."""
    from salseg.studies.collect import collect_study

    config_paths.set_config_dirs(list(config_dirs))
    code = collect_study(Path(study))
    if code:
        sys.exit(code)
    return code


# ------------------------------------------------------------------------------------------ the commands
def launch_ablation(name: str, overrides: list[str], launcher: DictConfig, resume: bool = False) -> int:
    from salseg.studies.plan import ablation_plan, load_ablation

    abl = load_ablation(name)
    return launch_study("ablation", name, ablation_plan(abl), overrides, None, Path("ablations") / name, resume,
                        launcher, summary=list(abl.get("summary") or []))


def launch_comparison(name: str, overrides: list[str], launcher: DictConfig, resume: bool = False) -> int:
    from salseg.studies.plan import comparison_plan, load_comparison

    return launch_study("comparison", name, comparison_plan(load_comparison(name)), overrides, None, Path(name),
                        resume, launcher)


def describe_launch(kind: str, name: str, plan: list[Variant], overrides: list[str], launcher: DictConfig) -> str:
    """The launcher config and, for SLURM, each job's sbatch resources (``--print-config``)."""
    text = "# launcher\n" + OmegaConf.to_yaml(launcher)
    if launcher.kind != "slurm":
        return text
    for v in plan:
        refs = ([v.checkpoint_of] if v.checkpoint_of else []) + [r for _, r in v.use_checkpoint_of]
        config = resolve(compose(v.experiment, variant_overrides(kind, name, v, {r: "<from its job>" for r in refs},
                                                                 overrides, None)))
        params = job_resources(config, launcher, f"{kind} {name}, variant {v.name!r}")
        text += f"# job {name}:{v.name}\n" + OmegaConf.to_yaml(params)
    return text


# ------------------------------------------------------------------------------------------ robustness studies
# `salseg robust NAME launcher=slurm`: one job per study (salseg.robustness: train once if the model trains, test
# under AWGN / JPEG), its outputs in its run folder as locally; a comparison's entries each their own job, then a
# collect job (afterany) writing the side-by-side table into <study>/robustness/, as the local run writes it into
# runs/<NAME>/<timestamp>/robustness/. The study folder runs/<NAME>/<timestamp>/ keeps plan_state.json (kind
# "robustness") and the submitit logs under slurm/.
ROBUST_KIND = "robustness"


def robust_plan(name: str, overrides: list[str], ckpt_path=None, variances=None, awgn_range=None,
                jpeg_range=None) -> tuple[list[Variant], dict[str, tuple], bool]:
    """(entries, entry -> (composed config, study settings), whether ``name`` is a comparison): a comparison's
    entries composed as the local run composes them, or the one experiment as its only entry."""
    from salseg.robustness import comparison_studies, robustness_config
    from salseg.studies.plan import comparison_entries, load_comparison

    cmp = load_comparison(name)
    if cmp is not None:
        if ckpt_path is not None:
            raise ConfigError(f"--ckpt tests one model, and {name!r} compares {list(comparison_entries(cmp))}: "
                              "give one of those experiments with --ckpt")
        entries, plan = comparison_studies(name, cmp, list(overrides), variances, awgn_range, jpeg_range)
        return entries, plan, True
    return ([Variant(name, name, ())],
            {name: robustness_config(name, list(overrides), ckpt_path, variances, awgn_range, jpeg_range)}, False)


def _robust_folder(parent: Path, resume: bool) -> Path:
    """A new ``<parent>/<timestamp>``, or with ``resume`` the newest robustness study there (a comparison's own
    SLURM studies share ``runs/<NAME>/``: their plan_state.json says another kind)."""
    import json

    if resume:
        earlier = sorted(p.parent for p in parent.glob(f"*/{StudyState.FILE}")
                         if json.loads(p.read_text()).get("study", {}).get("kind") == ROBUST_KIND)
        if earlier:
            print(f"[salseg] resuming the robustness study in {earlier[-1]}")
            return earlier[-1]
        print(f"[salseg] --resume but no earlier robustness study under {parent}: starting a new one")
    return parent / time.strftime("%Y%m%d-%H%M%S")


def launch_robustness(name: str, overrides: list[str], launcher: DictConfig, resume: bool = False,
                      ckpt_path=None, variances=None, awgn_range=None, jpeg_range=None, executor=None) -> int:
    """Submit one job per robustness study (and, for a comparison, the collect job); print one line per entry;
    return 0, or with ``launcher.wait`` the collect step's status once the last job ended."""
    from salseg.robustness import load_result

    entries, plan, comparison = robust_plan(name, overrides, ckpt_path, variances, awgn_range, jpeg_range)
    first_cfg, first_study = next(iter(plan.values()))
    out = _robust_folder(Path(first_cfg.runs_dir).resolve() / name, resume)
    executor = executor or slurm_executor(out / "slurm")
    state = StudyState(out, resume)
    state.describe(kind=ROBUST_KIND, name=name, overrides=list(overrides), ckpt_path=first_study["ckpt_path"],
                   variances=first_study["variances"], awgn_range=first_study["awgn_range"],
                   jpeg_range=first_study["jpeg_range"], launcher=OmegaConf.to_container(launcher))
    active = active_jobs(e.get("job_id") for e in state.entries.values()) if resume else {}
    config_dirs = [str(d.resolve()) for d in config_paths.user_dirs()]
    got = Submission()
    for v in entries:
        cfg, study = plan[v.name]
        where = f"robustness {name}" + (f", entry {v.name!r}" if comparison else "")
        planned = comparable(resolve(cfg))
        earlier = state.recorded_run(v.name, planned)
        if earlier is not None and load_result(earlier) is not None:
            print(f"[salseg] {where}: complete in {earlier}, not resubmitted")
            continue
        job_id = state.entries.get(v.name, {}).get("job_id")
        if job_id in active:
            print(f"[salseg] {where}: job {job_id} is still {active[job_id]}, left alone")
            got.jobs[v.name], got.logs[v.name] = job_id, state.entries[v.name].get("stdout", "")
            continue
        params = {**UNSET, **job_resources(planned, launcher, where), "job_name": f"robust-{name}:{v.name}"}
        executor.update_parameters(**params)
        _point_executor(executor, params)
        job = _submit(executor, where, robust_job, str(out), v.name, cfg, study, config_dirs)
        logs = {"job_id": str(job.job_id), "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
        state.record(v.name, **logs)
        got.jobs[v.name], got.logs[v.name] = logs["job_id"], logs["stdout"]
    for v in entries:
        if v.name in got.jobs:
            print(f"[salseg] robustness {name}: {v.name}  job {got.jobs[v.name]}  log {got.logs[v.name]}")
    if not got.jobs:
        print(f"[salseg] robustness {name}: every entry is complete; collecting")
        return collect_robustness(out)
    last = next(iter(got.jobs.values()))
    if comparison:
        job = _submit_collect(executor, launcher, f"robust-{name}:collect", f"robustness {name}", out, state, got,
                              config_dirs)
        last = got.collect_job
        print(f"[salseg] robustness {name}: collect  job {job.job_id}  log {job.paths.stdout}  (afterany)")
    print(f"[salseg] robustness {name}: study folder {out}")
    if not launcher.wait:
        return 0
    _wait_for(last)
    return collect_robustness(out, write=False)


def robust_job(study: str, entry: str, cfg: DictConfig, settings: dict, config_dirs: list[str] = ()) -> str:
    """One robustness study's job (:func:`salseg.robustness._run_one`, the local step), recording its run folder
    in plan_state.json. A requeued job (preempted training) continues its recorded run from its last.ckpt."""
    from salseg import tracking
    from salseg.robustness import _run_one, load_result
    from salseg.studies.preemption import REQUEUE_ENV
    from salseg.studies.run import last_checkpoint

    os.environ[REQUEUE_ENV] = "1"  # as run_job: a SIGTERM in training saves last.ckpt and requeues
    signal.signal(signal.SIGUSR2, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    config_paths.set_config_dirs(list(config_dirs))
    state = StudyState(Path(study), resume=True)
    planned = comparable(resolve(cfg))
    earlier = state.recorded_run(entry, planned)
    if earlier is not None and load_result(earlier) is not None:
        print(f"[salseg] {entry}: complete in {earlier}, not rerun")
        return str(earlier)
    if earlier is not None and last_checkpoint(earlier).is_file() and not planned["test_only"]:
        print(f"[salseg] {entry}: continuing the interrupted run {earlier} from its last.ckpt")
        cfg = cfg.copy()
        OmegaConf.update(cfg, "ckpt_path", str(last_checkpoint(earlier)), merge=False)
    before = os.environ.get(tracking.RUN_DIR_ENV)
    try:
        result = _run_one(entry, cfg, settings, time.time())
    except BaseException:
        started = os.environ.get(tracking.RUN_DIR_ENV)  # the runner names its run folder here once made
        if started and started != before:
            state.record(entry, started, planned)
        raise
    state.record(entry, result.run_dir, planned)
    return str(result.run_dir)


def collect_robustness(folder: Path, write: bool = True) -> int:
    """Every entry's state (as ``salseg collect``); a comparison's side-by-side outputs from its complete entries
    (``write``) into ``<folder>/robustness/``; 1 when an entry is not complete."""
    from salseg.robustness import OUT_DIR, load_result, write_comparison
    from salseg.studies.collect import state_table, variant_states

    start = time.time()
    state = StudyState(folder, resume=True)
    s = state.study
    name = s["name"]
    entries, plan, comparison = robust_plan(name, s.get("overrides", []), s.get("ckpt_path"), s.get("variances"),
                                            s.get("awgn_range"), s.get("jpeg_range"))
    states = variant_states(entries, state)
    results = {}
    for v in entries:
        if states[v.name]["state"] == "complete":
            result = load_result(states[v.name]["run_dir"])
            if result is None:  # the run completed, its robustness outputs were not written
                states[v.name]["state"] = "failed"
            else:
                results[v.name] = result
    print(f"[salseg] robustness {name}: {folder}\n" + state_table(states))
    if comparison and write and results:
        done = write_comparison(name, plan, results, Path(folder) / OUT_DIR, start)
        print(f"[salseg] robustness {name}: side by side in {done.out_dir}")
    if not comparison:
        for result in results.values():
            print(f"[salseg] robustness {name}: outputs in {result.out_dir}")
    missing = [n for n, st in states.items() if st["state"] != "complete"]
    if missing:
        print(f"[salseg] robustness {name}: not complete: "
              + ", ".join(f"{n} ({states[n]['state']})" for n in missing)
              + (f"; the table holds the {len(results)} complete entr{'y' if len(results) == 1 else 'ies'}"
                 if comparison and results else ""))
        return 1
    return 0


def describe_robustness(name: str, overrides: list[str], launcher: DictConfig, **settings) -> str:
    """``salseg robust NAME --print-config``: the launcher, each study's composed config and, for SLURM, its
    job's sbatch resources."""
    entries, plan, _ = robust_plan(name, overrides, **settings)
    text = "# launcher\n" + OmegaConf.to_yaml(launcher)
    for v in entries:
        cfg, _study = plan[v.name]
        text += f"# robustness {name}: {v.name}\n" + OmegaConf.to_yaml(cfg, resolve=True)
        if launcher.kind == "slurm":
            params = job_resources(resolve(cfg), launcher, f"robustness {name}, entry {v.name!r}")
            text += f"# job robust-{name}:{v.name}\n" + OmegaConf.to_yaml(params)
    return text
