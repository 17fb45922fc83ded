"""Run directories and loggers: W&B (online when it can be, offline otherwise, never waiting) plus a CSV log.

Every run lives in ``runs/<NAME>/<timestamp>/``. Under DDP, Lightning re-launches this same command once per
extra process; those processes must write into the directory rank 0 chose, so the chosen path travels in the
``SALSEG_RUN_DIR`` environment variable, which child processes inherit.
"""

from __future__ import annotations

import netrc
import os
import secrets
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

RUN_DIR_ENV = "SALSEG_RUN_DIR"
WANDB_DEFAULT_URL = "https://api.wandb.ai"


def env_global_rank() -> int:
    """This process's global rank as the launcher announced it (before any process group exists).

    torchrun sets RANK, SLURM sets SLURM_PROCID, and Lightning's own launcher gives its child processes LOCAL_RANK
    (and NODE_RANK); a plain single process has none of them and is rank 0.
    """
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return int(os.environ.get("NODE_RANK", "0") or 0) + int(os.environ.get("LOCAL_RANK", "0") or 0)


def _cluster_run_name() -> str | None:
    """A run directory name that every process of a cluster job can compute alone (they start independently)."""
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        array = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{os.environ['SLURM_JOB_ID']}" + (f"-{array}" if array else "")
    if os.environ.get("TORCHELASTIC_RUN_ID") and os.environ.get("TORCHELASTIC_RUN_ID") != "none":
        return f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}"
    return None


def latest_run_dir(runs_dir: Path, name: str) -> Path | None:
    """The newest run of ``name`` that has a ``checkpoints/last.ckpt`` (what RESUME=1 continues), else None."""
    root = Path(runs_dir) / name
    if not root.is_dir():
        return None
    with_ckpt = [p for p in root.iterdir() if (p / "checkpoints" / "last.ckpt").is_file()]
    return max(with_ckpt, key=lambda p: (p / "checkpoints" / "last.ckpt").stat().st_mtime, default=None)


def prepare_run_dir(runs_dir: str | Path, name: str, resume: bool = False) -> Path:
    """Pick the run directory on rank 0 and create it; other ranks only learn the path.

    Processes started by Lightning's launcher inherit ``SALSEG_RUN_DIR``; under SLURM / torchrun every process
    derives the same name from the job id. Whatever a non-zero rank computes here is provisional: the evaluation
    callback takes rank 0's path by broadcast once the process group exists.
    """
    rank = env_global_rank()
    cluster = _cluster_run_name()
    if rank > 0:
        inherited = os.environ.get(RUN_DIR_ENV)
        return Path(inherited) if inherited else Path(runs_dir) / name / (cluster or "rank-provisional")
    run_dir = None
    if resume:
        run_dir = latest_run_dir(Path(runs_dir), name)
        if run_dir is None:
            print(f"[salseg] RESUME=1 but no run of {name!r} under {runs_dir}/{name} has checkpoints/last.ckpt: "
                  "starting a new run")
    if run_dir is None and cluster:
        run_dir = Path(runs_dir) / name / cluster
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (Path(runs_dir) / name).mkdir(parents=True, exist_ok=True)
        for suffix in range(1000):  # two runs started in the same second each get their own directory
            candidate = Path(runs_dir) / name / (stamp if suffix == 0 else f"{stamp}-{suffix}")
            try:
                candidate.mkdir()
                run_dir = candidate
                break
            except FileExistsError:
                continue
    for sub in ("checkpoints", "plots"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
    return run_dir


def wandb_server() -> tuple[str, int]:
    """(host, port) of the W&B server: ``WANDB_BASE_URL`` (a self-hosted server) or W&B's cloud."""
    url = os.environ.get("WANDB_BASE_URL") or WANDB_DEFAULT_URL
    parts = urlsplit(url if "://" in url else f"https://{url}")
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: let the probe fail on the default port
        port = None
    return parts.hostname or url, port or (80 if parts.scheme == "http" else 443)


def _has_wandb_credentials(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _reachable(host: str, port: int = 443, timeout: float = 1.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_mode(requested: str = "auto") -> tuple[str, str]:
    """Decide ``online``/``offline``/``disabled`` without ever blocking on the network for long.

    ``auto`` goes online only with credentials AND a reachable server (one 1.5 s TCP probe of ``WANDB_BASE_URL``'s
    host:port, W&B's cloud without it); CI always runs offline. Returns (mode, reason) so the run can say why it
    is offline; the reason names the server when the probe decided.
    """
    if requested not in {"auto", "online", "offline", "disabled"}:
        raise ValueError(f"logger.mode must be one of auto, online, offline, disabled; got {requested!r}")
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in {"offline", "disabled", "dryrun"}:
        return ("offline" if env_mode == "dryrun" else env_mode), f"WANDB_MODE={env_mode}"
    if requested in {"offline", "disabled"}:
        return requested, f"logger.mode={requested}"
    if os.environ.get("CI"):
        return "offline", "CI is set"
    host, port = wandb_server()
    if not _has_wandb_credentials(host):
        return "offline", "no W&B credentials (wandb login or WANDB_API_KEY)"
    if not _reachable(host, port):
        via = "WANDB_BASE_URL" if os.environ.get("WANDB_BASE_URL") else "W&B's default server"
        return "offline", f"{host}:{port} ({via}) is not reachable within 1.5 s"
    return "online", f"credentials and {host}:{port} reachable"


def make_loggers(cfg: dict, run_dir: Path) -> list:
    """CSV always; W&B unless disabled. ``cfg`` is the resolved experiment config."""
    from lightning.pytorch.loggers import CSVLogger

    log_cfg = cfg["logger"]
    loggers: list = []
    if log_cfg.get("csv", True):
        # version=None: csv/version_0, then version_1 after a resume, so a resume never erases the earlier log
        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv"))
    if log_cfg.get("wandb", False):
        mode, reason = wandb_mode(log_cfg.get("mode", "auto"))
        if mode != "disabled":
            loggers.append(_wandb_logger(cfg, run_dir, mode, reason))
    return loggers


def _wandb_logger(cfg: dict, run_dir: Path, mode: str, reason: str):
    from lightning.pytorch.loggers import WandbLogger

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    if mode == "offline":
        # Offline runs must not try the network at all (no version checks, no login prompts).
        os.environ["WANDB_MODE"] = "offline"
        if env_global_rank() == 0:
            print(f"[salseg] W&B offline ({reason}); sync later with: wandb sync {run_dir}/wandb/offline-run-*")
    log_cfg = cfg["logger"]
    log_model = bool(log_cfg.get("log_model", False))
    if mode == "offline" and log_model:
        _stage_artifacts_in(run_dir / "wandb" / "artifacts")
    # One W&B run per run directory: a resumed run continues the same W&B run (its id is kept on disk).
    id_file = run_dir / "wandb_run_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    if run_id is None:
        run_id = secrets.token_hex(4)  # W&B ids are short [a-z0-9] strings
        if env_global_rank() == 0:
            id_file.write_text(run_id + "\n")
    logger = WandbLogger(
        id=run_id,
        resume="allow",
        project=log_cfg.get("project", "salseg"),
        entity=log_cfg.get("entity"),
        name=f"{cfg['name']}/{run_dir.name}",
        group=cfg.get("group") or cfg["name"],
        tags=list(cfg.get("tags") or []),
        notes=cfg.get("notes") or None,
        save_dir=str(run_dir),
        # wandb.init's own mode rather than Lightning's ``offline`` flag, which refuses log_model: an offline run
        # keeps its checkpoint artifacts until `wandb sync` uploads them
        mode=mode,
        config=cfg,
        job_type=log_cfg.get("job_type", "run"),
        # the checkpoints as W&B artifacts, logged when training ends; off by default (they can be large)
        log_model=log_model,
    )
    # how many test predictions per test set the evaluation callback logs as images with mask overlays
    logger.salseg_predictions = int(log_cfg.get("predictions_per_test_set", 8))
    return logger


_STAGED_BY_US: list[str] = []  # the WANDB_DATA_DIR values this process set (a user's own value is kept)


def _stage_artifacts_in(folder: Path) -> None:
    """Offline artifacts wait for `wandb sync` as copies in WANDB_DATA_DIR (~/.local/share/wandb by default): put
    them under the run directory, unless the user chose a place."""
    current = os.environ.get("WANDB_DATA_DIR")
    if current is None or current in _STAGED_BY_US:
        os.environ["WANDB_DATA_DIR"] = str(folder)
        _STAGED_BY_US.append(str(folder))


def finish_loggers(loggers: list) -> None:
    for logger in loggers:
        try:
            logger.finalize("success")
        except Exception:  # a logger that cannot flush must not turn a finished run into a failure
            pass
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except ImportError:
        pass


def study_logger_config(run_dirs: Mapping[str, str | Path]) -> Mapping | None:
    """The ``logger`` block the runs of a study used (their saved config.yaml): the first that logs to W&B (the
    entries of a comparison may differ), else the first found; None when none is readable."""
    from omegaconf import OmegaConf

    blocks = [OmegaConf.to_container(OmegaConf.load(Path(d) / "config.yaml")).get("logger") or {}
              for d in run_dirs.values() if (Path(d) / "config.yaml").is_file()]
    return next((b for b in blocks if b.get("wandb")), blocks[0] if blocks else None)


def log_summary_run(logger_cfg: Mapping | None, group: str, out_dir: Path, tables: Mapping[str, tuple],
                    images: Mapping[str, Path] = {}, line_series: Mapping[str, Mapping] = {}) -> bool:
    """A short W&B run ``<group>/summary`` (job type ``summary``) in the study's group: ``tables`` ({key:
    (columns, rows)}) as ``wandb.Table``, ``images`` ({key: PNG path}) and ``line_series`` ({key: keyword
    arguments of ``wandb.plot.line_series``}), then finished. Only when the study's runs logged to W&B (same mode
    decision as a run, :func:`wandb_mode`); offline files go under ``out_dir/wandb``. True when it logged."""
    if not logger_cfg or not logger_cfg.get("wandb", False):
        return False
    mode, reason = wandb_mode(logger_cfg.get("mode", "auto"))
    if mode == "disabled":
        return False
    import wandb

    out_dir.mkdir(parents=True, exist_ok=True)
    if mode == "offline":
        print(f"[salseg] W&B summary offline ({reason}); sync later with: wandb sync {out_dir}/wandb/offline-run-*")
    os.environ.setdefault("WANDB_SILENT", "true")
    with wandb.init(project=logger_cfg.get("project", "salseg"), entity=logger_cfg.get("entity"), group=group,
                    name=f"{group}/summary", job_type="summary", dir=str(out_dir), mode=mode,
                    reinit="finish_previous") as run:
        logged: dict = {key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])
                        for key, (columns, rows) in tables.items()}
        logged.update({key: wandb.Image(str(path)) for key, path in images.items() if Path(path).is_file()})
        logged.update({key: wandb.plot.line_series(**spec) for key, spec in line_series.items()})
        run.log(logged)
    return True
