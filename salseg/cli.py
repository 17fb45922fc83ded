"""``python -m salseg run|ablate|robust|eval|list ...``: the commands behind the Makefile."""

from __future__ import annotations

import argparse
import os
import sys

from salseg import config_paths


def _cmd_run(args) -> int:
    from omegaconf import OmegaConf

    from salseg.config import compose
    from salseg.runner import run
    from salseg.studies.plan import comparison_entries, load_comparison

    comparison = load_comparison(args.name)
    if comparison is not None:  # e.g. quickstart: several experiments, one comparison table
        if args.print_config:
            from salseg.studies.launch import describe_launch, load_launcher, split_launcher_overrides
            from salseg.studies.plan import comparison_plan

            mine, rest = split_launcher_overrides(args.overrides)
            print(describe_launch("comparison", args.name, comparison_plan(comparison), rest, load_launcher(mine)))
            for entry, overrides in comparison_entries(comparison, rest).items():
                print(f"# {args.name}: {entry}\n" + OmegaConf.to_yaml(compose(entry, overrides), resolve=True))
            return 0
        from salseg.studies.launch import launch_comparison, load_launcher, split_launcher_overrides
        from salseg.studies.run import run_comparison

        mine, rest = split_launcher_overrides(args.overrides)
        launcher = load_launcher(mine)
        if launcher.kind == "slurm":
            return launch_comparison(args.name, rest, launcher, resume=args.resume)
        run_comparison(args.name, rest, resume=args.resume)
        return 0
    from salseg.studies.launch import split_launcher_overrides

    mine, _ = split_launcher_overrides(args.overrides)
    if mine:
        from salseg.config import ConfigError

        raise ConfigError(f"{mine[0]}: a launcher runs a study's variants (salseg ablate NAME, or a comparison); "
                          f"{args.name!r} is one experiment: submit `salseg run {args.name}` with sbatch yourself "
                          "(README \"Studies on SLURM\")")
    cfg = compose(args.name, args.overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg, resolve=True))
        return 0
    run(cfg, resume=args.resume)
    return 0


def _cmd_ablate(args) -> int:
    from salseg.studies.launch import describe_launch, launch_ablation, load_launcher, split_launcher_overrides
    from salseg.studies.run import run_ablation

    mine, rest = split_launcher_overrides(args.overrides)  # launcher=slurm launcher.partition=...: the launcher's
    launcher = load_launcher(mine)
    if args.print_config:
        from salseg.studies.plan import ablation_plan, load_ablation

        print(describe_launch("ablation", args.name, ablation_plan(load_ablation(args.name)), rest, launcher))
        return 0
    if launcher.kind == "slurm":
        return launch_ablation(args.name, rest, launcher, resume=args.resume)
    run_ablation(args.name, rest, resume=args.resume)
    return 0


def _cmd_collect(args) -> int:
    from salseg.studies.collect import collect_study, find_study

    return collect_study(find_study(args.name, args.study), args.name)


def _cmd_robust(args) -> int:
    from salseg.robustness import run_robustness
    from salseg.studies.launch import describe_robustness, launch_robustness, load_launcher, split_launcher_overrides

    mine, rest = split_launcher_overrides(args.overrides)  # launcher=slurm launcher.partition=...: the launcher's
    launcher = load_launcher(mine)
    settings = {"ckpt_path": args.ckpt, "variances": args.variances, "awgn_range": args.awgn, "jpeg_range": args.jpeg}
    if args.print_config:
        print(describe_robustness(args.name, rest, launcher, **settings))
        return 0
    if launcher.kind == "slurm":
        return launch_robustness(args.name, rest, launcher, resume=args.resume, **settings)
    if args.resume:
        from salseg.config import ConfigError

        raise ConfigError("--resume: a local robustness study runs in one go and keeps no study state; --resume "
                          "skips the complete entries of a launcher=slurm one")
    run_robustness(args.name, rest, **settings)
    return 0


def _cmd_eval(args) -> int:
    import warnings

    # A note about the input (maps resized to their GT's size) is one line too, not Python's warning + source line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        code = _eval_folders(args)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"salseg: warning: {w.message}", file=sys.stderr)
        else:  # a library's deprecation and the like: as Python shows it
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return code


def _eval_folders(args) -> int:
    from salseg.atomic import write_json
    from salseg.eval_report import EvalConfigError, load_config, parse_pred_args

    if args.config:
        if args.pred or args.gt:
            raise EvalConfigError("salseg eval: give either --config FILE or --pred/--gt, not both")
        datasets, methods = load_config(args.config)
    else:
        if not args.pred or not args.gt:
            raise EvalConfigError("salseg eval: --pred DIR (or NAME=DIR, repeatable) and --gt DIR are required "
                                  "(or --config FILE)")
        methods_dirs = parse_pred_args(args.pred)
        if len(methods_dirs) == 1 and not args.out:  # one folder: the table of one row, as always
            from salseg.evaluate import evaluate_folders, format_table

            (name, pred), = methods_dirs.items()
            result = evaluate_folders(pred, args.gt, allow_missing=args.allow_missing, num_workers=args.workers)
            print(f"{result['n_images']} images: {pred} against {args.gt}")
            print(format_table({args.name or ("pred" if "=" not in args.pred[0] else name): result["metrics"]}))
            if args.json:
                write_json(args.json, result)
                print(f"wrote {args.json}")
            return 0
        from pathlib import Path

        gt = Path(args.gt)
        dataset = gt.resolve().parent.name if gt.name.lower() in ("gt", "gts", "mask", "masks") else gt.name
        datasets, methods = {dataset: {"gt": gt}}, {m: {dataset: d} for m, d in methods_dirs.items()}
    return _eval_many(args, datasets, methods)


def _eval_many(args, datasets, methods) -> int:
    """Every method on every dataset: tables (markdown printed; md/csv/tex written), curves and one JSON."""
    import time
    from pathlib import Path

    from salseg.atomic import write_json
    from salseg.eval_report import evaluate_many, write_report

    out = Path(args.out or Path("runs") / "eval" / time.strftime("%Y%m%d-%H%M%S"))
    start = time.perf_counter()
    results = evaluate_many(datasets, methods, allow_missing=args.allow_missing, num_workers=args.workers)
    for dataset, by_method in results.items():
        for method, result in by_method.items():
            print(f"{dataset}: {method}: {result['n_images']} images in {result['timing']['wall_s']:.1f} s")
    report = write_report(results, out)
    for dataset, table in report["tables"].items():
        print(f"\n## {dataset}\n\n{table}")
    if args.json:
        write_json(args.json, {"results": results})
        print(f"wrote {args.json}")
    print(f"\nwrote {out}/ (per dataset: .md .csv .tex tables, _pr.png and _f_threshold.png curves; results.json) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_predict(args) -> int:
    import time

    from salseg.predict import load_method, pick_device, predict_folder

    device = pick_device(args.device)
    predictor = load_method(args.source, args.overrides)
    start = time.perf_counter()
    written = predict_folder(predictor, args.images, args.out, map_name=args.map, batch_size=args.batch_size,
                             recursive=args.recursive, num_workers=args.workers, device=device)
    print(f"{len(written)} maps from {predictor.source} written to {args.out} "
          f"({time.perf_counter() - start:.1f} s on {device})")
    return 0


def _cmd_list(args) -> int:
    from salseg.config import list_ablations, list_experiments

    print("experiments:", " ".join(list_experiments()))
    print("ablations:  ", " ".join(list_ablations()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="salseg", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train (when the method trains) and test one experiment")
    r.add_argument("name", help="experiment name: a file experiments/<name>.yaml"
                   " or experiments/comparisons/<name>.yaml")
    r.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. trainer.max_epochs=3 data=ecssd")
    r.add_argument("--resume", action="store_true", help="continue the newest run of NAME from its last.ckpt "
                   "(a comparison: skip the entries whose run completed, run the rest)")
    r.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    r.set_defaults(func=_cmd_run)

    a = sub.add_parser("ablate", help="run every variant of experiments/ablations/<name>.yaml, write a table + PR plot")
    a.add_argument("name")
    a.add_argument("overrides", nargs="*", help="overrides applied to every variant")
    a.add_argument("--resume", action="store_true", help="reuse the newest study folder: skip the variants whose "
                   "run completed, run the rest")
    a.add_argument("--print-config", action="store_true", help="print the launcher config (and each SLURM job's "
                   "resources) and exit")
    a.set_defaults(func=_cmd_ablate)

    co = sub.add_parser("collect", help="a study's table from its complete variants (a SLURM study's collect job; "
                        "any study folder): prints each variant's state, exit 1 when one is not complete")
    co.add_argument("name", help="the ablation or comparison")
    co.add_argument("--study", metavar="DIR", help="the study folder (default: the newest of NAME)")
    co.set_defaults(func=_cmd_collect)

    rb = sub.add_parser("robust", help="robustness study (MEnet Table II / Fig. 8): test under AWGN and JPEG at random "
                        "strengths and at fixed noise variances; write a table + max-F-vs-variance plot")
    rb.add_argument("name", help="experiment name: a file experiments/<name>.yaml (or a comparison: one study per "
                    "entry, then a side-by-side table); launcher=slurm: each study its own SLURM job")
    rb.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. data.test.shapes.size=50")
    rb.add_argument("--ckpt", help="test this checkpoint (test_only=true ckpt_path=...) instead of training")
    rb.add_argument("--variances", help="fixed AWGN variances for the F-vs-noise curve, comma-separated "
                    "(default 0.001,0.005,0.01,0.02,0.05,0.1; intensities in [0, 1]; clean = 0 is always included)")
    rb.add_argument("--awgn", metavar="LO,HI", help="random AWGN variance range per image (default 0.01,0.1)")
    rb.add_argument("--jpeg", metavar="LO,HI", help="random JPEG quality range per image (default 10,90)")
    rb.add_argument("--resume", action="store_true", help="launcher=slurm: reuse the newest robustness study "
                    "folder: skip the entries whose study completed, submit the rest")
    rb.add_argument("--print-config", action="store_true", help="print the launcher, each study's composed config "
                    "(and with launcher=slurm each job's resources) and exit")
    rb.set_defaults(func=_cmd_robust)

    e = sub.add_parser("eval", help="score folders of saved saliency maps against GT masks: one folder, or "
                       "several methods (x datasets with --config) as paper-style tables and curves")
    e.add_argument("--pred", action="append", default=[], metavar="[NAME=]DIR",
                   help="folder of maps (any image format), paired with GT by file stem; repeatable, one per method "
                   "(NAME defaults to the folder's name)")
    e.add_argument("--gt", help="folder of ground-truth masks")
    e.add_argument("--config", metavar="FILE.yaml", help="methods x datasets (PySODEvalToolkit style): datasets: "
                   "{NAME: {gt: DIR}}, methods: {NAME: {DATASET: DIR}} or {NAME: 'pattern/{dataset}'}")
    e.add_argument("--out", help="several methods: folder for the tables (.md .csv .tex), curves and results.json "
                   "(default runs/eval/<timestamp>)")
    e.add_argument("--json", help="also write the metrics (and PR curves) to this JSON file")
    e.add_argument("--name", help="row label in the printed table (one --pred)")
    e.add_argument("--allow-missing", action="store_true", help="skip GT files without a prediction (counted)")
    e.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    e.set_defaults(func=_cmd_eval)

    pr = sub.add_parser("predict", help="write the saliency maps of a trained run, a checkpoint or a training-free "
                        "method for a folder of images (8-bit PNGs at each image's size, named <stem>.png)")
    pr.add_argument("source", help="a run folder (runs/<NAME>/<stamp>, or runs/<NAME>: its newest run), a checkpoint "
                    "file, or an experiment name (a training-free method such as rc_shapes; a trained one: the "
                    "newest run of that experiment)")
    pr.add_argument("overrides", nargs="*", help="dotlist overrides of an experiment name, e.g. model.num_workers=2")
    pr.add_argument("--images", required=True, help="folder of images (any format PIL opens)")
    pr.add_argument("--out", required=True, help="folder for the maps (created; subfolders mirror --recursive)")
    pr.add_argument("--map", help="which map to write (default: the method's primary map, e.g. --map metric for "
                    "MEnet's metric map); a semantic map (DCSP) is written as class indices with the VOC palette")
    pr.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    pr.add_argument("--recursive", action="store_true", help="also the images in subfolders of --images")
    pr.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:1, ...")
    pr.add_argument("--workers", type=int, default=0, help="DataLoader processes decoding images (default 0)")
    pr.set_defaults(func=_cmd_predict)

    ls = sub.add_parser("list", help="list experiments and ablations")
    ls.set_defaults(func=_cmd_list)

    # `--debug` before or after the command: the subcommands' copy defaults to SUPPRESS so that it never resets
    # a `salseg --debug run ...` given before the command.
    debug_help = "on an error about the input, show the full Python traceback instead of one line"
    p.add_argument("--debug", action="store_true", help=debug_help)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    # `--config-dir` before or after the command too; two dests, because a subcommand's parse would replace (not
    # extend) the list given before it.
    config_help = (f"also look for configs/<group>/*.yaml and experiments/*.yaml (+ ablations/, comparisons/) in "
                   f"DIR, before the shipped ones and {config_paths.ENV_VAR}; repeatable")
    p.add_argument("--config-dir", action="append", default=[], metavar="DIR", dest="config_dirs", help=config_help)
    for command in sub.choices.values():
        command.add_argument("--config-dir", action="append", default=[], metavar="DIR", dest="config_dirs_after",
                             help=config_help)
    return p


def _quiet_known_noise() -> None:
    """Drop third-party chatter that says nothing about the run (adverts, deprecations inside Lightning)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*anonymous setting has no effect.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda rec: "litlogger" not in rec.getMessage())


def _user_message(err: BaseException) -> str:
    """The error's own message, also when it was raised inside a DataLoader worker.

    torch re-raises a worker's exception in the main process as the same type built from one string: "Caught
    <Type> in DataLoader worker process N.\nOriginal Traceback ...", the worker's whole traceback, whose last line
    is "<module>.<Type>: <message>" (torch/_utils.py, ExceptionWrapper.reraise). The user's line is that message.
    """
    text = str(err)
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        text = last.removeprefix(f"{type(err).__module__}.{type(err).__qualname__}: ")
    return text


def _close_progress_bars() -> None:
    """End a progress bar the error interrupted (Lightning's test bar, predict's), so the error starts its own line
    instead of trailing the bar's text."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes the positional overrides only up to the first option (`robust NAME a=1 --ckpt X b=2` leaves
    # `b=2` over): overrides after an option belong to the same list, in order; anything else is still an error.
    if extra:
        if hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _quiet_known_noise()
    from salseg.errors import SalsegError

    try:
        config_paths.set_config_dirs(args.config_dirs + getattr(args, "config_dirs_after", []))
        status = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe raises here, not in the interpreter's exit
        return status
    except (SalsegError, FileNotFoundError) as err:
        if args.debug:
            raise
        # Errors about the user's input: one clear line, not a traceback (`--debug` shows it).
        _close_progress_bars()
        print(f"salseg: error: {_user_message(err)}", file=sys.stderr)
        return 2
    except SystemExit as err:
        if type(err).__name__ != "SIGTERMException":  # Lightning's stop on SIGTERM (salseg.studies.preemption)
            raise
        # A SystemExit without a code would exit 0, as if the run had finished: exit like a process killed by
        # SIGTERM (128 + 15), with what was kept and how to go on.
        _close_progress_bars()
        print("salseg: stopped by SIGTERM: the training's checkpoints/last.ckpt holds the step it reached; "
              "continue with --resume (RESUME=1)", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # `salseg list | head -1`: the reader went away. Point stdout at devnull so the interpreter's final flush
        # does not raise again, and exit like a shell command killed by SIGPIPE (128 + 13).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
