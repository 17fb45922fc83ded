"""`make ablation NAME=... RESUME=1`: a study reruns only the entries whose run failed or never ran."""

import csv
import json
from pathlib import Path

import pytest

import salseg.config as config
import salseg.runner as runner
from salseg.cli import main

RC = ("defaults: {data: shapes, model: region_contrast, trainer: cpu, logger: csv}\n"
      "data: {test: {shapes: {dataset: shapes, split: test, size: 3}}, num_workers: 0}\n")


@pytest.fixture
def study(tmp_path, monkeypatch):
    """An ablation of three Region Contrast variants (fast: training-free, 3 test images), and the runs it made."""
    exp_dir = tmp_path / "experiments"
    (exp_dir / "ablations").mkdir(parents=True)
    (exp_dir / "rc_tiny.yaml").write_text(RC)
    monkeypatch.setattr(config, "EXPERIMENT_DIR", exp_dir)
    monkeypatch.setattr(config, "ABLATION_DIR", exp_dir / "ablations")
    ran: list[str] = []
    real_run = runner.run

    def counted_run(cfg, resume=False):
        ran.append(cfg.tags[-1])  # the variant's name (tags=[ablation, NAME, variant])
        return real_run(cfg, resume=resume)

    monkeypatch.setattr(runner, "run", counted_run)

    def write(third: str) -> None:
        (exp_dir / "ablations" / "three.yaml").write_text(
            "base: rc_tiny\nvariants:\n  a: {}\n  b: {model.sigma_s2: 0.1}\n" f"  c: {{{third}}}\n")

    return write, ran, tmp_path


def ablate(tmp_path, runs: str, *flags: str) -> int:
    return main(["ablate", "three", f"runs_dir={tmp_path / runs}", *flags])


def table(folder: Path) -> list[dict]:
    return list(csv.DictReader(open(folder / "table.csv")))


def test_a_resumed_ablation_runs_only_the_variant_that_failed(study, capsys):
    write, ran, tmp_path = study
    write("model.n_levels: 0")  # variant c cannot run (n_levels must be >= 2)
    assert ablate(tmp_path, "runs") == 2
    assert ran == ["a", "b", "c"]
    (folder,) = (tmp_path / "runs" / "ablations" / "three").iterdir()
    first = json.loads((folder / "plan_state.json").read_text())["entries"]
    assert list(first) == ["a", "b"]  # c never made a run folder
    assert all((Path(e["run_dir"]) / "metrics.json").is_file() for e in first.values())

    write("model.n_levels: 8")  # fixed; a and b are unchanged
    ran.clear()
    assert ablate(tmp_path, "runs", "--resume") == 0
    assert ran == ["c"]  # a and b were collected, not run again
    out = capsys.readouterr().out
    assert f"[salseg] a: complete in {first['a']['run_dir']}, not rerun" in out
    assert f"[salseg] b: complete in {first['b']['run_dir']}, not rerun" in out
    assert [p.name for p in (tmp_path / "runs" / "ablations" / "three").iterdir()] == [folder.name]  # reused
    runs = json.loads((folder / "results.json").read_text())["runs"]
    assert runs["a"] == first["a"]["run_dir"] and runs["b"] == first["b"]["run_dir"]
    assert len(list((tmp_path / "runs" / "rc_tiny").iterdir())) == 3  # one run per variant, none twice

    ran.clear()  # the same table as a study run from scratch
    assert ablate(tmp_path, "fresh") == 0 and ran == ["a", "b", "c"]
    (fresh,) = (tmp_path / "fresh" / "ablations" / "three").iterdir()
    assert table(folder) == table(fresh) and len(table(fresh)) == 3

    ran.clear()  # a variant whose config changed since its run is run again; without --resume everything runs
    write("model.n_levels: 6")
    assert ablate(tmp_path, "runs", "--resume") == 0 and ran == ["c"]
    ran.clear()
    assert ablate(tmp_path, "runs") == 0 and ran == ["a", "b", "c"]


def test_an_interrupted_run_continues_from_its_checkpoint(study, monkeypatch, capsys):
    # a run that crashed after making its folder and last.ckpt (e.g. killed mid-training) is run again from there
    write, ran, tmp_path = study
    write("model.n_levels: 8")
    real_run = runner.run

    def crash_in_c(cfg, resume=False):
        result = real_run(cfg, resume=resume)
        if cfg.tags[-1] == "c":
            (result.run_dir / "metrics.json").unlink()  # as a crash before the run's end leaves it
            raise RuntimeError("killed")
        return result

    monkeypatch.setattr(runner, "run", crash_in_c)
    with pytest.raises(RuntimeError, match="killed"):
        ablate(tmp_path, "runs")
    (folder,) = (tmp_path / "runs" / "ablations" / "three").iterdir()
    crashed = json.loads((folder / "plan_state.json").read_text())["entries"]["c"]["run_dir"]
    assert (Path(crashed) / "checkpoints" / "last.ckpt").is_file()

    monkeypatch.setattr(runner, "run", real_run)
    ran.clear()
    assert ablate(tmp_path, "runs", "--resume") == 0
    assert f"[salseg] c: continuing the interrupted run {crashed} from its last.ckpt" in capsys.readouterr().out
    runs = json.loads((folder / "results.json").read_text())["runs"]
    assert f"ckpt_path: {crashed}/checkpoints/last.ckpt" in (Path(runs["c"]) / "config.yaml").read_text()


def test_resume_without_an_earlier_study_starts_a_new_one(study, capsys):
    write, ran, tmp_path = study
    write("model.n_levels: 8")
    assert ablate(tmp_path, "runs", "--resume") == 0 and ran == ["a", "b", "c"]
    assert "RESUME=1 but no earlier study under" in capsys.readouterr().out


def test_a_resumed_comparison_skips_complete_entries_and_reruns_what_depends_on_a_rerun(study, capsys):
    # `make exp NAME=<comparison> RESUME=1`: rc_b tests rc_a's checkpoint, so it is reused only while rc_a is
    write, ran, tmp_path = study
    exp_dir = config.EXPERIMENT_DIR
    (exp_dir / "rc_a.yaml").write_text(RC)
    (exp_dir / "rc_b.yaml").write_text(RC)
    (exp_dir / "comparisons").mkdir()
    (exp_dir / "comparisons" / "pair.yaml").write_text(
        "compare: [rc_a, {rc_b: {use_checkpoint_of: {ckpt_path: rc_a}}}]\n")
    argv = ["run", "pair", f"runs_dir={tmp_path / 'runs'}"]
    assert main(argv) == 0 and ran == ["rc_a", "rc_b"]
    (folder,) = (tmp_path / "runs" / "pair").iterdir()
    first = json.loads((folder / "results.json").read_text())["runs"]

    ran.clear()
    assert main(argv + ["--resume"]) == 0 and ran == []
    assert f"[salseg] rc_b: complete in {first['rc_b']}, not rerun" in capsys.readouterr().out
    assert json.loads((folder / "results.json").read_text())["runs"] == first

    (Path(first["rc_a"]) / "metrics.json").unlink()  # rc_a lost: it runs again, and so does rc_b on its new ckpt
    assert main(argv + ["--resume"]) == 0 and ran == ["rc_a", "rc_b"]
    again = json.loads((folder / "results.json").read_text())["runs"]
    assert again["rc_a"] != first["rc_a"] and again["rc_b"] != first["rc_b"]
