"""W&B as its users expect (README "Outputs and tracking"): WANDB_BASE_URL probed, offline files under the run
directory, test metrics returned by trainer.test(), predictions with mask overlays, PR charts, study tables in the
study's group, checkpoints as artifacts. Every run here is offline (conftest sets WANDB_MODE=offline)."""

import lightning.pytorch as pl
import numpy as np
import pytest
import wandb
import wandb.sdk.wandb_run as wandb_run
from omegaconf import OmegaConf

from salseg import robustness, tracking
from salseg.config import compose
from salseg.runner import run
from salseg.studies import report

TWO_SETS = ["data.test={a: {dataset: shapes, split: test, size: 4}, b: {dataset: shapes, split: test, size: 6}}",
            "data.eval_batch_size=4", "data.num_workers=0", "logger=wandb", "logger.predictions_per_test_set=3"]
TINY_MENET = ["logger=wandb", "logger.log_model=true", "model.depth=3", "model.width=4", "model.max_width=16",
              "data.image_size=32", "data.num_workers=0", "data.val=null", "data.batch_size=8",
              "data.eval_batch_size=4", "data.train={dataset: shapes, split: train, size: 8, image_size: 32}",
              "data.test={shapes: {dataset: shapes, split: test, size: 2}}", "trainer.max_steps=1",
              "trainer.enable_progress_bar=false"]


@pytest.fixture
def logged(monkeypatch):
    """Everything W&B runs log (the offline files are still written)."""
    calls: list[dict] = []
    real = wandb_run.Run.log

    def spy(self, data, *args, **kwargs):
        calls.append(dict(data))
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(wandb_run.Run, "log", spy)
    return calls


def _merged(calls: list[dict]) -> dict:
    return {k: v for call in calls for k, v in call.items()}


def test_wandb_base_url_is_the_probed_server_and_named_when_offline(monkeypatch, tmp_path, capsys):
    probed = []
    monkeypatch.setattr(tracking, "_reachable", lambda host, port, timeout=1.5: probed.append((host, port)))
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://wandb.lab.example:8080/")
    assert tracking.wandb_mode("auto") == ("offline", "wandb.lab.example:8080 (WANDB_BASE_URL) is not reachable "
                                                      "within 1.5 s")
    assert probed == [("wandb.lab.example", 8080)]
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.lab.example")  # no port: the scheme's
    assert tracking.wandb_server() == ("wandb.lab.example", 443)
    monkeypatch.delenv("WANDB_BASE_URL")
    assert tracking.wandb_server() == ("api.wandb.ai", 443)

    # the run says so in one line naming the server, and its offline files go under the run directory
    monkeypatch.setenv("WANDB_BASE_URL", "http://wandb.lab.example:8080")
    cfg = OmegaConf.to_container(compose("rc_shapes", ["logger=wandb", f"runs_dir={tmp_path}"]), resolve=True)
    capsys.readouterr()
    loggers = tracking.make_loggers(cfg, tmp_path)
    lines = [line for line in capsys.readouterr().out.splitlines() if "W&B" in line]
    assert len(lines) == 1 and "wandb.lab.example:8080" in lines[0] and "offline" in lines[0]
    assert loggers[-1].save_dir == str(tmp_path)

    # WANDB_MODE=offline is honoured without any probe
    monkeypatch.setenv("WANDB_MODE", "offline")
    probed.clear()
    assert tracking.wandb_mode("auto") == ("offline", "WANDB_MODE=offline") and probed == []


def test_test_metrics_returned_and_predictions_logged_per_test_set(tmp_path, monkeypatch, logged):
    returned = []
    real_test = pl.Trainer.test

    def test_spy(self, *args, **kwargs):
        returned.append(real_test(self, *args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(pl.Trainer, "test", test_spy)
    result = run(compose("rc_shapes", TWO_SETS + [f"runs_dir={tmp_path}"]))
    (per_loader,) = returned
    for metrics in per_loader:  # one dict per test loader, holding the scores of every test set
        for ds in ("a", "b"):
            assert metrics[f"test/{ds}/maxF"] == pytest.approx(result.metrics["saliency"][ds]["maxF"])
            assert metrics[f"test/{ds}/MAE"] == pytest.approx(result.metrics["saliency"][ds]["MAE"])

    everything = _merged(logged)
    for ds, n in (("a", 3), ("b", 3)):
        images = everything[f"test/{ds}/predictions"]
        assert len(images) == n and all(isinstance(im, wandb.Image) for im in images)
        assert set(images[0]._masks) == {"prediction", "ground_truth"}
        assert isinstance(everything[f"test/{ds}/pr_curve"], wandb.plot.CustomChart)
    assert everything["test/a/maxF"] == pytest.approx(result.metrics["saliency"]["a"]["maxF"])
    # read back from the offline run's files, under the run directory
    (offline,) = (result.run_dir / "wandb").glob("offline-run-*")
    media = offline / "files" / "media"
    for ds in ("a", "b"):
        assert len(list((media / "images" / "test" / ds).glob("predictions_*.png"))) == 3
        assert len(list((media / "images" / "mask" / "test" / ds).glob("predictions_*.mask.png"))) == 3 * 2
        assert len(list((media / "table" / "test" / ds).glob("pr_curve_table_*.table.json"))) == 1


def test_overlay_is_at_the_ground_truth_size_with_binary_masks():
    from salseg.callbacks.evaluation import MASK_LABELS, _overlay

    image = np.full((8, 8, 3), 0.5, dtype=np.float32)  # the network's input size
    gt = np.zeros((12, 16), dtype=np.uint8)
    gt[:, 8:] = 255
    pred = np.tile(np.linspace(0, 255, 16, dtype=np.float32).round().astype(np.uint8), (12, 1))
    shown = _overlay(image, gt, {"saliency": pred, "refined": 255 - pred}, "img1")
    assert shown.image.size == (16, 12) and shown._caption == "img1"
    masks = {k: m._val["mask_data"] for k, m in shown._masks.items()}
    assert set(masks) == {"ground_truth", "prediction", "prediction_refined"}
    assert masks["ground_truth"].tolist() == (gt > 127).astype(np.uint8).tolist()
    assert masks["prediction"][0].tolist() == [0] * 8 + [1] * 8 and masks["prediction_refined"][0, 0] == 1
    assert shown._masks["prediction"]._val["class_labels"] == MASK_LABELS


def test_csv_logger_logs_nothing_to_wandb(tmp_path, logged):
    run(compose("rc_shapes", TWO_SETS + ["logger=csv", f"runs_dir={tmp_path}"]))
    assert logged == []


def test_checkpoints_as_artifacts_behind_log_model(tmp_path, monkeypatch):
    artifacts = []
    real = wandb_run.Run.log_artifact

    def spy(self, artifact, *args, **kwargs):
        artifacts.append(artifact)
        return real(self, artifact, *args, **kwargs)

    monkeypatch.setattr(wandb_run.Run, "log_artifact", spy)
    monkeypatch.delenv("WANDB_DATA_DIR", raising=False)  # restored after the test: the run sets it
    result = run(compose("menet_shapes", TINY_MENET + [f"runs_dir={tmp_path}"]))
    (model,) = [a for a in artifacts if a.type == "model"]
    assert any(name.endswith(".ckpt") for name in model.manifest.entries)
    # an offline run keeps the artifact's copy under its run directory until `wandb sync`
    assert any(p.stat().st_size > 1000 for p in (result.run_dir / "wandb" / "artifacts").rglob("*") if p.is_file())

    artifacts.clear()
    run(compose("menet_shapes", TINY_MENET + [f"runs_dir={tmp_path}", "logger.log_model=false"]))
    assert [a for a in artifacts if a.type == "model"] == []


def test_study_tables_go_to_a_summary_run_in_the_group(tmp_path, logged, capsys):
    run_dir = tmp_path / "runs" / "v1"
    run_dir.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"logger": {"wandb": True, "mode": "auto", "project": "salseg"}}),
                   run_dir / "config.yaml")
    csv_only = tmp_path / "runs" / "v0"  # an entry that logged to CSV only: the study still has a W&B run
    csv_only.mkdir()
    OmegaConf.save(OmegaConf.create({"logger": {"wandb": False}}), csv_only / "config.yaml")
    rows = {"v1": {"shapes": {"maxF": 0.5, "MAE": 0.2}}, "v2": {"shapes": {"maxF": 0.6, "MAE": 0.1}}}
    curves = {"v1": {"recall": [0.0, 1.0], "precision": [1.0, 0.5]}}
    report.write_outputs(tmp_path / "abl", "abl", rows, curves, {"v1": str(csv_only), "v2": str(run_dir)})
    table = _merged(logged)["ablation/table"]
    assert isinstance(table, wandb.Table) and table.columns == ["variant", "dataset", "maxF", "MAE"]
    assert table.data == [["v1", "shapes", 0.5, 0.2], ["v2", "shapes", 0.6, 0.1]]
    assert isinstance(_merged(logged)["ablation/plots/pr_curves"], wandb.Image)
    assert len(list((tmp_path / "abl" / "wandb").glob("offline-run-*"))) == 1
    assert "W&B summary offline (WANDB_MODE=offline)" in capsys.readouterr().out

    # a study whose runs did not log to W&B logs nothing
    logged.clear()
    report.write_outputs(tmp_path / "abl2", "abl2", rows, curves, {"v1": str(csv_only)})
    assert logged == [] and not (tmp_path / "abl2" / "wandb").exists()


def test_robustness_tables_and_f_vs_noise_curve_logged(tmp_path, logged):
    conditions = {c: {"maxF": 0.5, "MAE": 0.2} for c in robustness.CONDITIONS}
    rows = {("saliency",): {"shapes": conditions}}
    lines = {("saliency",): {"shapes": {"variance": [0.0, 0.01, 0.1], "maxF": [0.5, 0.4, 0.2]}}}
    study = {"datasets": ["shapes"], "awgn_range": [0.0, 0.1], "jpeg_range": [10, 90], "variances": [0.01, 0.1]}
    robustness.write_outputs(tmp_path / "rob", "rob", ("map",), rows, lines, study, {"experiment": "rob"},
                             wandb_group="rob", logger_cfg={"wandb": True, "mode": "offline"})
    everything = _merged(logged)
    assert isinstance(everything["robustness/table"], wandb.Table)
    assert everything["robustness/f_vs_noise"].columns == ["map", "dataset", "variance", "maxF"]
    assert isinstance(everything["robustness/f_vs_noise_chart"], wandb.plot.CustomChart)
    assert isinstance(everything["robustness/plots/f_vs_noise"], wandb.Image)
    assert isinstance(everything["robustness/f_vs_noise"], wandb.Table)


def test_a_robustness_run_with_wandb_logs_its_summary_in_its_group(tmp_path, logged):
    res = robustness.run_robustness("rc_shapes", ["data.test.shapes.size=2", "data.eval_batch_size=2",
                                                  "data.num_workers=0", "logger=wandb", f"runs_dir={tmp_path}"],
                                    variances=[0.1])
    summary = next(call for call in logged if "robustness/table" in call)
    table = summary["robustness/f_vs_noise"]
    assert table.columns[:4] == ["map", "dataset", "variance", "maxF"]
    maxf = res.curves["saliency"]["shapes"]["maxF"]
    assert [row[:4] for row in table.data] == [["saliency", "shapes", 0.0, pytest.approx(maxf[0], abs=1e-6)],
                                               ["saliency", "shapes", 0.1, pytest.approx(maxf[1], abs=1e-6)]]
    assert isinstance(summary["robustness/f_vs_noise_chart"], wandb.plot.CustomChart)
    (offline,) = (res.out_dir / "wandb").glob("offline-run-*")
    assert any(offline.glob("run-*.wandb"))


def test_palette_colours_invert_to_their_labels():
    from salseg.callbacks.evaluation import _labels_from_palette
    from salseg.plots import label_palette

    labels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(_labels_from_palette(label_palette()[labels]), labels)


def test_a_segmentation_is_logged_with_class_masks(tmp_path, logged):
    """DCSP's primary map is a segmentation: its predictions carry the GT and the labels as class masks."""
    tiny = ["data.num_workers=0", "data.image_size=32", "data.eval_batch_size=4", "trainer.enable_progress_bar=false",
            f"runs_dir={tmp_path}"]
    saliency = run(compose("rc_shapes", tiny + ["logger=csv", "data.test.shapes.size=2"]))
    result = run(compose("dcsp_shapes", tiny + [
        "logger=wandb", "logger.predictions_per_test_set=2", "data.test.shapes_multi.size=3", "test_only=true",
        f"model.saliency_checkpoint={saliency.run_dir / 'checkpoints' / 'last.ckpt'}"]))
    images = _merged(logged)["test/shapes_multi/predictions"]
    assert len(images) == 2 and all(isinstance(im, wandb.Image) for im in images)
    masks = images[0]._masks
    assert set(masks) == {"ground_truth", "prediction"}
    class_labels = masks["prediction"]._val["class_labels"]
    assert class_labels[0] == "background" and class_labels[255] == "ignore" and len(class_labels) == 6
    for mask in masks.values():
        assert set(np.unique(mask._val["mask_data"])) <= set(class_labels)
    assert len(np.unique(masks["ground_truth"]._val["mask_data"])) >= 2  # background and at least one shape
    assert "mIoU" in result.metrics["segmentation"]["shapes_multi"]
