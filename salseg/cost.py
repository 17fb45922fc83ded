"""What a method costs at inference: parameters, FLOPs of one inference, images per second.

README "Tests and benchmarks" shows the table; README "Outputs and tracking" the metrics.json block.

The figures SALOD and MMSegmentation report beside their scores, measured on the method's ``test_step`` (the
contract of :mod:`salseg.methods.base`: MEnet's and DCSP's forward with their test-time scales and flips, GD
saliency's T steps of gradient descent per map, Region Contrast's per-image segmentation), on a batch of the
experiment's own test image (its size: ``data.image_size``, or the native size when that is null).

- FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the torch matrix products and
  convolutions (including the backward passes of GD saliency's optimisation) at 2 FLOPs per multiply-accumulate;
  MMSegmentation's and SALOD's counters (mmcv, thop/fvcore) count one per multiply-accumulate, so halve ours to
  compare. Work done outside torch (NumPy / scikit-image: Region Contrast, GD's SLIC refinement, DCSP's dense CRF)
  is invisible to the counter: a method in which it saw no torch arithmetic reports ``flops: null`` ("n/a").
- images/s are timed with :class:`torch.utils.benchmark.Timer` (``blocked_autorange``: warm-up, then blocks of
  calls for at least ``min_run_time`` seconds, the median block; CUDA synchronised by the Timer; ``num_threads``
  torch threads), under ``torch.inference_mode`` as Lightning's test loop runs. A run's metrics.json times one
  call after one warm-up (``min_run_time=0``: cheap, noisier); ``make bench`` (benchmarks/bench_cost.py) times
  a second of calls.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.benchmark import Measurement, Timer
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Total and trainable (``requires_grad``) parameter counts; a tensor shared by two modules counts once."""
    params = list(model.parameters())  # nn.Module.parameters() already yields a shared tensor once
    return {"total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad)}


class _GlobalOnly:
    """Stands in for FlopCounterMode's ModuleTracker: no hooks, every FLOP attributed to "Global"."""

    parents = frozenset({"Global"})

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def count_flops(fn: Callable[[], object]) -> int | None:
    """FLOPs of one call of ``fn`` as :class:`FlopCounterMode` counts them; None when it counted none (the work
    happens outside torch, so there is nothing honest to report)."""
    counter = FlopCounterMode(display=False)
    # Totals only: FlopCounterMode's per-module tracker hooks every module input into autograd, and
    # torch.autograd.grad (GD saliency's descent) refuses those hooks (pytorch/pytorch#131753). Its FLOPs are
    # counted under the tracker's "Global" parent, which get_total_flops() reads.
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    total = int(counter.get_total_flops())
    return total or None


def time_calls(fn: Callable[[], object], *, num_threads: int | None = None, repeats: int | None = None,
               min_run_time: float = 0.2) -> Measurement:
    """Calls of ``fn`` timed by :class:`torch.utils.benchmark.Timer` with ``num_threads`` torch threads (default:
    the current setting; the Timer's own default is 1), CUDA synchronised by the Timer.

    ``repeats`` given: that fixed count of calls after the Timer's two warm-up calls (``timeit``: one block; the
    benchmarks' ``--repeats``). Else ``blocked_autorange``: a block size estimated on warm-up calls (1, 10, 100 ...
    calls, until the timer's overhead is under 1e-4 of a block or a block outlasts ``min_run_time``), then blocks
    until ``min_run_time`` seconds are spent; ``min_run_time=0``: one warm-up call and one timed call."""
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=int(num_threads or torch.get_num_threads()))
    if repeats is not None:
        return timer.timeit(number=repeats)
    return timer.blocked_autorange(min_run_time=min_run_time)


def seconds_per_call(fn: Callable[[], object], **timing) -> float:
    """Seconds of one call of ``fn``: the mean of ``repeats`` calls, or the median block of ``blocked_autorange``
    (:func:`time_calls`, whose keywords it takes)."""
    measurement = time_calls(fn, **timing)
    return float(measurement.mean if timing.get("repeats") is not None else measurement.median)


def inference_call(model: torch.nn.Module, images: torch.Tensor) -> Callable[[], object]:
    """One test-step inference of ``model`` on ``images`` (B, 3, H, W): its ``test_step`` on a batch holding
    only the images (no labels, so no test-time accuracy bookkeeping), under ``torch.inference_mode``."""
    batch = {"image": images}

    def call():
        with torch.inference_mode():
            return model.test_step(batch, 0)

    return call


def measure(model: torch.nn.Module, image: torch.Tensor, *, batch_size: int = 1,
            device: str | torch.device | None = None, num_threads: int | None = None,
            min_run_time: float = 0.2) -> dict:
    """The cost block of metrics.json and of ``make bench``: parameters, FLOPs of one inference of ``batch_size``
    copies of ``image`` (3, H, W), and images/s of that inference on ``device`` (default: the model's) with
    ``num_threads`` torch threads (default: the current setting). The model is left in eval mode on ``device``."""
    device = torch.device(device) if device is not None else next(model.parameters(), torch.empty(0)).device
    num_threads = int(num_threads or torch.get_num_threads())
    model = model.to(device).eval()
    images = image.to(device, torch.float32).unsqueeze(0).expand(batch_size, -1, -1, -1).contiguous()
    call = inference_call(model, images)
    flops = count_flops(call)  # also the first (warm-up) call
    measurement = time_calls(call, num_threads=num_threads, min_run_time=min_run_time)
    seconds = float(measurement.median)
    return {
        "params": count_parameters(model),
        "flops": flops,
        "gflops": round(flops / 1e9, 3) if flops is not None else None,
        "images_per_s": round(batch_size / seconds, 3),
        "seconds_per_batch": seconds,
        "timed_calls": measurement.number_per_run * len(measurement.times),
        "input_size": [int(s) for s in images.shape[-2:]],
        "batch_size": batch_size,
        "device": str(device),
        "threads": num_threads,
    }


def format_cost_table(rows: dict[str, dict]) -> str:
    """A markdown table: method -> its :func:`measure` block."""
    lines = ["| method | input | params | trainable | GFLOPs | images/s | device | threads |",
             "|---|---|---:|---:|---:|---:|---|---:|"]
    for name, c in rows.items():
        gflops = "n/a" if c["gflops"] is None else f"{c['gflops']:.3f}"
        h, w = c["input_size"]
        lines.append(f"| {name} | {h}x{w} | {c['params']['total']:,} | {c['params']['trainable']:,} | {gflops} "
                     f"| {c['images_per_s']:.2f} | {c['device']} | {c['threads']} |")
    return "\n".join(lines)
