"""benchmarks/bench_gpu.py (``make bench-gpu``, issue 16 item 3) runs on the CPU at its tiny ``--quick`` sizes,
writes every section's figures to JSON, and keeps going past a failing section (keeping the figures it timed)
with a non-zero exit status."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
SECTIONS = ["metrics", "menet_inference", "menet_train", "gd", "dcsp_train"]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_cpu_run_writes_every_section(tmp_path):
    out = tmp_path / "bench.json"
    # one thread: on a busy shared CPU, torch's default (every core) spends most of its time waiting on the others
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--threads", "1",
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["profile"] == "quick" and report["device"] == "cpu" and report["failed"] == []
    assert report["threads"] == 1
    assert list(report["sections"]) == SECTIONS
    assert report["anchors"]["menet_s_per_image"] == 0.086
    assert report["goals"] == {"menet_inference_b32_images_per_s": 1000, "gd_images_per_s": 1000,
                               "metrics_maps_per_s": 2000}
    sections = report["sections"]
    for name in SECTIONS:
        assert sections[name]["status"] == "ok", (name, sections[name])
        for item in sections[name]["items"].values():
            if isinstance(item, dict):
                assert item["s_per_call"] > 0 and item["timed_calls"] >= 1 and item["images_per_s" if "images_per_s"
                                                                                      in item else "maps_per_s"] > 0
    assert sections["metrics"]["items"]["torch_b4"]["engine"] == "torch"  # the batched path, as on a GPU
    assert set(sections["menet_inference"]["items"]) >= {"fp32_b1", "bf16_b1", "fp32_b2", "bf16_b2"}
    assert set(sections["menet_train"]["items"]) == {"fp32_b2"}
    assert set(sections["gd"]["items"]) == {"fp32", "bf16"}
    assert sections["dcsp_train"]["items"]["fp32"]["s_per_step"] > 0
    assert "| menet_inference | fp32_b1 |" in proc.stdout and "paper 0.086 s/img" in proc.stdout


def test_a_failing_section_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    bench = load_bench()

    def broken(device, cfg, budget, notes, out):  # the fp32 item is timed, then bf16 fails
        out["fp32"] = {"s_per_call": 0.5, "timed_calls": 3, "images_per_s": 4.0}
        raise RuntimeError("no such kernel")

    monkeypatch.setitem(bench.SECTIONS, "gd", ("gd", broken))
    out = tmp_path / "bench.json"
    rc = bench.main(["--device", "cpu", "--quick", "--sections", "gd,metrics", "--json", str(out)])
    assert rc == 1
    report = json.loads(out.read_text())
    assert report["failed"] == ["gd"]
    assert report["sections"]["gd"]["error"] == "RuntimeError: no such kernel"
    assert report["sections"]["gd"]["items"]["fp32"]["images_per_s"] == 4.0  # timed before the failure: kept
    assert report["sections"]["metrics"]["status"] == "ok"
    captured = capsys.readouterr()
    assert "section gd FAILED: RuntimeError: no such kernel" in captured.out
    assert "| gd | fp32 | 0.5000 | 4 img/s |" in captured.out
    assert "| gd | failed: RuntimeError: no such kernel |" in captured.out
    assert "failed sections: gd" in captured.err


def test_unknown_section_is_one_line_naming_it(capsys):
    assert load_bench().main(["--device", "cpu", "--sections", "gd,menet"]) == 2
    err = capsys.readouterr().err
    assert "--sections: unknown menet" in err and "menet_inference" in err and "Traceback" not in err


def test_sections_past_the_time_limit_are_skipped_and_fail_the_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = load_bench().main(["--device", "cpu", "--quick", "--sections", "metrics,gd", "--time-limit", "0",
                            "--json", str(out)])
    assert rc == 1
    report = json.loads(out.read_text())
    assert report["failed"] == ["metrics", "gd"]
    assert {r["status"] for r in report["sections"].values()} == {"skipped"}
    assert "section gd skipped: past --time-limit 0 s" in capsys.readouterr().out
