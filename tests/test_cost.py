"""Cost reports (salseg.cost): parameter counts, FLOPs against the analytic count, images/s in metrics.json."""

import json

import pytest
import torch
from torch import nn

from salseg.config import ConfigError, compose
from salseg.cost import count_flops, count_parameters, format_cost_table, measure, seconds_per_call
from salseg.methods.base import SalsegMethod
from salseg.runner import run

SMALL = ["data.test.shapes.size=4", "data.eval_batch_size=4", "data.num_workers=0", "logger=csv"]


class TinyConvNet(SalsegMethod):
    """conv 3->8 (3x3, pad 1) -> ReLU -> conv 8->1 (1x1); one frozen parameter to tell trainable from total."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 1, 1)
        self.frozen = nn.Parameter(torch.zeros(5), requires_grad=False)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        return {"saliency": torch.sigmoid(self.conv2(torch.relu(self.conv1(batch["image"]))))}


def test_parameters_are_the_sum_of_numel():
    net = TinyConvNet()
    counts = count_parameters(net)
    assert counts["total"] == sum(p.numel() for p in net.parameters()) == (3 * 8 * 9 + 8) + (8 + 1) + 5
    assert counts["trainable"] == counts["total"] - 5


def test_flops_of_a_tiny_conv_net_are_the_analytic_count():
    net, h, w = TinyConvNet(), 16, 12
    x = torch.rand(2, 3, h, w)
    flops = count_flops(lambda: net.test_step({"image": x}, 0))
    # 2 FLOPs per multiply-accumulate: per output pixel and output channel, C_in x k x k of them (bias not counted)
    expected = 2 * 2 * h * w * (8 * 3 * 3 * 3 + 1 * 8 * 1 * 1)
    assert flops == expected


def test_work_outside_torch_has_no_flops_but_a_speed():
    class NumpyOnly(SalsegMethod):
        def test_step(self, batch, batch_idx, dataloader_idx=0):
            return {"saliency": torch.from_numpy(batch["image"].numpy().mean(1, keepdims=True))}

    cost = measure(NumpyOnly(), torch.rand(3, 8, 8), min_run_time=0.01, num_threads=1)
    assert cost["flops"] is None and cost["gflops"] is None
    assert cost["images_per_s"] > 0 and cost["params"] == {"total": 0, "trainable": 0}
    assert "| n/a |" in format_cost_table({"numpy": cost})


def test_measure_reports_input_device_threads_and_batch():
    cost = measure(TinyConvNet(), torch.rand(3, 16, 12), batch_size=3, num_threads=1, min_run_time=0.01)
    assert cost["input_size"] == [16, 12] and cost["batch_size"] == 3
    assert cost["device"] == "cpu" and cost["threads"] == 1
    assert cost["flops"] == 3 * 2 * 16 * 12 * (8 * 27 + 8)
    assert cost["images_per_s"] == pytest.approx(3 / cost["seconds_per_batch"], rel=1e-2)


def test_fixed_count_timing_calls_the_function_repeats_plus_two_warm_up_times():
    calls = []
    seconds = seconds_per_call(lambda: calls.append(1), repeats=5, num_threads=1)
    assert len(calls) == 5 + 2 and 0 < seconds < 0.1


def test_metrics_json_of_a_run_has_the_cost_block(tmp_path):
    result = run(compose("rc_shapes", SMALL + [f"runs_dir={tmp_path}"]))
    cost = json.loads((result.run_dir / "metrics.json").read_text())["cost"]
    assert cost["images_per_s"] > 0
    assert cost["input_size"] == [128, 128]  # the shapes test images' size
    assert cost["flops"] is None  # Region Contrast computes in NumPy: no FLOPs to report
    assert cost["params"] == {"total": 0, "trainable": 0}
    assert cost["device"] == "cpu" and cost["threads"] == torch.get_num_threads()
    assert cost["timed_calls"] == 1  # a run's short budget: one warm-up call, one timed call


def test_cost_false_leaves_the_block_out(tmp_path):
    result = run(compose("rc_shapes", SMALL + [f"runs_dir={tmp_path}", "cost=false"]))
    doc = json.loads((result.run_dir / "metrics.json").read_text())
    assert doc["status"] == "complete" and "cost" not in doc


def test_a_cost_value_that_is_not_a_boolean_is_refused_by_name():
    with pytest.raises(ConfigError, match="cost=lots.*boolean"):
        compose("rc_shapes", ["cost=lots"])


def test_a_test_step_that_cannot_run_on_a_bare_batch_records_why_and_the_run_stands(capsys):
    from types import SimpleNamespace

    from salseg.runner import _measure_cost

    class NeedsMask(SalsegMethod):
        def test_step(self, batch, batch_idx, dataloader_idx=0):
            return {"saliency": batch["mask"]}

    datamodule = SimpleNamespace(test_datasets=[[{"image": torch.rand(3, 8, 8)}]])
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    assert _measure_cost(NeedsMask(), datamodule, trainer) == {"error": "KeyError: 'mask'"}
    assert "cost not measured (KeyError: 'mask')" in capsys.readouterr().out
