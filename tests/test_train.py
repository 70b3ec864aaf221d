"""The training loop: batch plan, schedules, FLOPs, run folders, and real CPU runs of run.py
(logs, report, exact resume after SIGKILL, out-of-memory back-off, 2-process DeepSpeed)."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from march.train.config import TrainConfig, parse_args
from march.train.loop import BatchPlan, batch_plan, halve, lr_factor, prepare_run_dir
from march.train.metrics import measured_matmul_tflops, peak_tflops, t5_training_flops

REPO = Path(__file__).resolve().parents[1]
# 4 samples of 64 + 14 tokens per step, one data worker, eager kernels: ~1 s per step on 2 cores
SMALL = ["--kernels", "eager", "--no-progress", "--input-length", "64", "--micro-batch-size", "4",
         "--tokens-per-step", "312", "--num-workers", "1", "--eval-every", "4", "--checkpoint-every", "4",
         "--eval-samples", "8", "--steps", "12"]


# --- arithmetic -----------------------------------------------------------------------------------

def test_batch_plan_from_token_budget():
    # the research: ~1M tokens per step of 512 + 114 tokens = 1675 samples
    p = batch_plan(1048576, 626, world=8, max_micro=64)
    assert (p.micro, p.accum) == (53, 4) and p.samples == 1696  # 1.06M tokens
    p = batch_plan(1048576, 626, world=1, max_micro=64)
    assert p.micro <= 64 and abs(p.samples * 626 - 1048576) / 1048576 < 0.03
    assert batch_plan(312, 78, world=1, max_micro=4) == BatchPlan(4, 1, 1)
    assert batch_plan(312, 78, world=2, max_micro=4) == BatchPlan(2, 1, 2)
    assert batch_plan(10, 626, world=2, max_micro=8).samples == 2  # at least one sample per rank


def test_out_of_memory_halves_micro_and_doubles_accumulation():
    p = BatchPlan(64, 2, 8)
    h = halve(p, 1048576, 626)
    assert (h.micro, h.accum, h.samples) == (32, 4, p.samples)  # tokens per step unchanged
    odd = halve(BatchPlan(53, 4, 8), 1048576, 626)
    assert odd.micro <= 26 and abs(odd.samples - 1696) / 1696 < 0.05
    with pytest.raises(RuntimeError, match="micro-batch of 1"):
        halve(BatchPlan(1, 8, 1), 1048576, 626)


def test_schedules():
    cfg = TrainConfig(steps=100, warmup_steps=10, schedule="constant")
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == 1.0 and lr_factor(99, cfg) == 1.0
    lin = TrainConfig(steps=100, warmup_steps=0, schedule="linear", min_lr_ratio=0.1)
    assert lr_factor(0, lin) == 1.0 and lr_factor(50, lin) == pytest.approx(0.55) and lr_factor(100, lin) == pytest.approx(0.1)
    cos = TrainConfig(steps=100, schedule="cosine")
    assert lr_factor(50, cos) == pytest.approx(0.5) and lr_factor(100, cos) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")


def test_peak_lookup_by_gpu_name():
    assert peak_tflops("NVIDIA H200") == peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA RTX A5000") == 111.1
    assert peak_tflops("NVIDIA L4") == 121.0 and peak_tflops("NVIDIA L40S") == 362.1
    assert peak_tflops("Some Future GPU") is None and peak_tflops("cpu") is None
    assert measured_matmul_tflops("NVIDIA H200") == 811.0 and measured_matmul_tflops("NVIDIA GH200") is None
    assert measured_matmul_tflops("cpu") is None


def test_flops_formula_matches_counted_matmuls():
    """3 × the forward matmul FLOPs that torch's FlopCounterMode counts on the real model."""
    from torch.utils.flop_counter import FlopCounterMode

    from march.models import T5Model, get_preset

    config = get_preset("Tiny")
    model = T5Model(config, kernels="eager").eval()
    x, y = torch.randint(2, 32000, (2, 16)), torch.randint(2, 32000, (2, 8))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=x, labels=y)
    assert 2 * t5_training_flops(config, 16, 8) == pytest.approx(3 * counter.get_total_flops(), rel=1e-6)


def test_cli_parses_launcher_local_rank():
    cfg, given = parse_args(["--local_rank=1", "--experiment", "GELUGatedLinearUnit", "--steps", "1000",
                             "--tokens-per-step", "1048576", "--zero-stage", "2", "--no-progress"])
    assert (cfg.local_rank, cfg.experiment, cfg.steps, cfg.zero_stage, cfg.progress) == (1, "GELUGatedLinearUnit", 1000, 2, False)
    assert given == {"local_rank", "experiment", "steps", "tokens_per_step", "zero_stage", "progress"}
    cpu = TrainConfig().resolved(cuda=False)
    assert cpu.experiment == "Tiny" and cpu.data == "sample" and cpu.lr == 1e-4 and cpu.zero_stage == 1
    assert cpu.checkpoints and cpu.max_wall_s is None
    cfg, _ = parse_args(["--no-checkpoints", "--max-wall-s", "2.5"])
    assert (cfg.checkpoints, cfg.max_wall_s) == (False, 2.5)
    with pytest.raises(ValueError, match="max_wall_s"):
        TrainConfig(max_wall_s=0)


def test_compile_options():
    cfg, given = parse_args(["--compile", "--compile-mode", "max-autotune-no-cudagraphs"])
    assert (cfg.compile, cfg.compile_mode, given) == (True, "max-autotune-no-cudagraphs", {"compile", "compile_mode"})
    assert TrainConfig().compile is False and TrainConfig().to_dict()["compile"] is False  # -> config.json
    with pytest.raises(ValueError, match="CUDA-graph"):  # replays overwrite the losses the loop keeps
        TrainConfig(compile=True, compile_mode="reduce-overhead")
    with pytest.raises(ValueError, match="zero_stage 3"):
        TrainConfig(compile=True, zero_stage=3)
    assert TrainConfig(compile=False, zero_stage=3).zero_stage == 3
    with pytest.raises(ValueError, match="zero3_persistence_threshold"):
        TrainConfig(zero_stage=3, zero3_persistence_threshold=-1)
    with pytest.raises(ValueError, match="zero_stage 3 only"):
        TrainConfig(zero_stage=2, zero3_persistence_threshold=0)


def test_run_folder_is_never_clobbered(tmp_path):
    cfg = TrainConfig(output_dir=str(tmp_path), run_name="r").resolved(cuda=False)
    cfg2, run_dir = prepare_run_dir(cfg, set(), rank=0)
    (run_dir / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="--resume .* --overwrite"):
        prepare_run_dir(cfg, set(), rank=0)
    resumed, _ = prepare_run_dir(TrainConfig(output_dir=str(tmp_path), run_name="r", steps=500, resume=True)
                                 .resolved(cuda=False), {"steps", "resume"}, rank=0)
    assert resumed.steps == 500 and resumed.resume
    with pytest.raises(ValueError, match="lr"):
        prepare_run_dir(TrainConfig(output_dir=str(tmp_path), run_name="r", lr=1e-3, resume=True)
                        .resolved(cuda=False), {"lr", "resume"}, rank=0)
    # compiled and plain runs continue each other (the checkpoints are the same)
    compiled, _ = prepare_run_dir(TrainConfig(output_dir=str(tmp_path), run_name="r", compile=True, resume=True)
                                  .resolved(cuda=False), {"compile", "resume"}, rank=0)
    assert compiled.compile and json.loads((run_dir / "config.json").read_text())["compile"] is True
    fresh, _ = prepare_run_dir(TrainConfig(output_dir=str(tmp_path), run_name="r", overwrite=True)
                               .resolved(cuda=False), {"overwrite"}, rank=0)
    assert not (run_dir / "metrics.jsonl").exists()


# --- real runs ------------------------------------------------------------------------------------

def _env(cpu=True):
    """The CPU tests run on the CPU even on the GPU host (bitwise-reproducible there; CUDA is not)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TRITON_INTERPRET")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["DS_ACCELERATOR"] = "cpu"
    return env


def _run(args, timeout=240, launcher=None, cpu=True, env=None):
    cmd = (launcher or [sys.executable]) + [str(REPO / "run.py")] + args
    proc = subprocess.run(cmd, cwd=REPO, env={**_env(cpu), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = _run(SMALL + ["--output-dir", str(out), "--run-name", "ref"])
    return out, out / "ref", proc


def test_cpu_run_learns_and_reports(reference):
    _, run_dir, proc = reference
    recs = _records(run_dir)
    assert [r["step"] for r in recs] == list(range(1, 13))
    assert [r["step"] for r in recs if "eval_loss" in r] == [4, 8, 12]
    losses = [r["loss"] for r in recs]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses  # visibly falling
    assert recs[-1]["tokens_seen"] == 12 * 312 and recs[-1]["grad_norm"] > 0 and recs[-1]["lr"] == 1e-4
    report = json.loads((run_dir / "report.json").read_text())
    for key in ("wall_clock_s", "tokens_seen", "tokens_per_s", "model_tflops_per_gpu", "mfu", "gpu_hours",
                "projected_s_per_1b_tokens", "peak_memory_gib", "final_eval_loss"):
        assert key in report
    assert report["tokens_seen"] == 12 * 312 and report["tokens_per_s"] > 0 and report["mfu"] is None  # CPU
    # where the time went: 2 warm-up steps (12 // 5) excluded from the timed ones
    assert (report["warmup_steps_excluded"], report["timed_steps"], report["stopped_early"]) == (2, 10, None)
    assert report["step_s_min"] <= report["step_s_median"] <= report["step_s_max"]
    assert report["step_s"] == pytest.approx(sum(r["step_s"] for r in recs[2:]) / 10, rel=1e-6)
    assert report["first_step_s"] == pytest.approx(recs[0]["step_s"], rel=1e-6)
    assert report["setup_s"] > 0 and report["eval_s"] > 0 and report["checkpoint_s"] > 0
    assert 0 <= report["data_wait_fraction"] < 1 and report["num_workers"] == 1
    assert report["peak_memory_gib_per_rank"] == [report["peak_memory_gib"]]
    assert "compute budget" in proc.stdout
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("step*"))
    assert kept == ["step00000008", "step00000012"]  # keep_checkpoints = 2


def test_exact_resume_after_sigkill(reference, tmp_path):
    """Kill -9 after the step-4 checkpoint; --resume reproduces the uninterrupted run's losses."""
    _, ref_dir, _ = reference
    args = SMALL + ["--output-dir", str(tmp_path), "--run-name", "killed"]
    proc = subprocess.Popen([sys.executable, str(REPO / "run.py")] + args, cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and any(json.loads(x)["step"] >= 6 for x in metrics.read_text().splitlines() if x.strip()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    latest = json.loads((tmp_path / "killed" / "checkpoints" / "latest.json").read_text())
    assert 4 <= latest["step"] < 12
    with pytest.raises(AssertionError, match="already holds a run"):  # no silent restart over it
        _run(args)
    _run(args + ["--resume"])
    ref, resumed = _records(ref_dir), _records(tmp_path / "killed")
    assert [r["step"] for r in resumed] == list(range(1, 13))
    for a, b in zip(ref, resumed):
        assert (a["loss"], a.get("eval_loss"), a["grad_norm"]) == (b["loss"], b.get("eval_loss"), b["grad_norm"]), \
            f"step {a['step']}: {a['loss']} vs {b['loss']}"


def test_out_of_memory_backoff(reference, tmp_path):
    """A (simulated) OOM above 2 samples: 4 x 1 becomes 2 x 2, same tokens per step, and says so."""
    _, ref_dir, _ = reference
    proc = _run(SMALL[:-2] + ["--steps", "4", "--fake-oom-above", "2", "--output-dir", str(tmp_path),
                              "--run-name", "oom"])
    assert "out of memory at step 0 with micro-batch 4 x 1 accumulation: retrying with 2 x 2" in proc.stderr
    report = json.loads((tmp_path / "oom" / "report.json").read_text())
    assert (report["micro_batch"], report["grad_accum"], report["tokens_per_step"]) == (2, 2, 312)
    assert report["oom_events"][0]["micro_from"] == 4 and report["tokens_seen"] == 4 * 312
    recs = _records(tmp_path / "oom")
    assert [r["accum"] for r in recs] == [2] * 4
    # the same samples per step: only dropout masks and summation order differ from the reference
    for a, b in zip(_records(ref_dir), recs):
        assert abs(a["loss"] - b["loss"]) < 0.15


def test_march_optimizer_trains_like_torch(reference, tmp_path):
    """--optimizer march under DeepSpeed (its bf16 optimizer hands the update fp32 flat partitions):
    march's AdamW kernel (in the interpreter here) follows the reference run's torch AdamW: the same
    losses to fp32 rounding, step by step."""
    _, ref_dir, _ = reference
    proc = _run(SMALL + ["--optimizer", "march", "--no-checkpoints", "--output-dir", str(tmp_path), "--run-name", "m"],
                env={"TRITON_INTERPRET": "1"})
    assert json.loads((tmp_path / "m" / "report.json").read_text())["optimizer"] == "march"
    assert "march AdamW" in proc.stdout
    ours, ref = _records(tmp_path / "m"), _records(ref_dir)
    assert [r["step"] for r in ours] == [r["step"] for r in ref]
    for a, b in zip(ours, ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=2e-3, abs=2e-3), (a, b)


def test_max_wall_s_stops_early_and_no_checkpoints(tmp_path):
    """--max-wall-s: the loop stops after the step that passes it, evaluates and still reports;
    --no-checkpoints: nothing is saved, not even at the end."""
    proc = _run(SMALL[:-2] + ["--steps", "50", "--max-wall-s", "0.001", "--no-checkpoints", "--output-dir",
                              str(tmp_path), "--run-name", "short", "--report-path", str(tmp_path / "r" / "rep.json")])
    assert "stopping early: --max-wall-s 0.001 reached after step 1 of 50" in proc.stderr
    report = json.loads((tmp_path / "r" / "rep.json").read_text())
    assert report["steps"] == 1 and report["stopped_early"].startswith("--max-wall-s")
    assert report["checkpoint_s"] == 0 and math.isfinite(report["final_eval_loss"])
    assert not (tmp_path / "short" / "checkpoints").exists()
    assert [("eval_loss" in r) for r in _records(tmp_path / "short")] == [True]


def test_compile_matches_plain_and_checkpoints_interchange(reference, tmp_path):
    """--compile (aot_eager: dynamo + AOTAutograd without inductor's slow CPU code generation):
    the losses of the plain run, one graph without breaks, eval uncompiled; its checkpoint holds the
    plain parameter names (loads into a T5Model strictly) and a plain --resume continues it; a
    compiled --resume continues the plain reference from its step-8 checkpoint."""
    from march.models import T5Model, get_preset

    aot = {"MARCH_COMPILE_BACKEND": "aot_eager"}
    ref = _records(reference[1])
    args = SMALL[:-2] + ["--output-dir", str(tmp_path), "--run-name", "c"]
    _run(args + ["--steps", "2", "--compile"], env=aot)  # steps 1-2 compiled, checkpoint at 2
    run_dir = tmp_path / "c"
    assert json.loads((run_dir / "config.json").read_text())["compile"] is True
    report = json.loads((run_dir / "report.json").read_text())
    assert (report["compile"], report["compile_backend"], report["compile_mode"]) == (True, "aot_eager", None)
    # one graph: no break, and no second one for the (no-grad) eval at step 2
    assert (report["compile_graphs"], report["compile_graph_breaks"]) == (1, 0)
    assert math.isfinite(report["final_eval_loss"]) and report["first_step_s"] > 0
    state = torch.load(run_dir / "checkpoints" / "step00000002" / "mp_rank_00_model_states.pt",
                       map_location="cpu", weights_only=False)["module"]
    assert not [k for k in state if "_orig_mod" in k]
    T5Model(get_preset("Tiny"), kernels="eager").load_state_dict(state, strict=True)

    _run(args + ["--steps", "4", "--resume", "--no-compile"])  # steps 3-4 plain, from the compiled checkpoint
    assert json.loads((run_dir / "report.json").read_text())["compile"] is False
    resumed = _records(run_dir)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]

    # the reference (plain) continued compiled from its step-8 checkpoint: steps 9-10
    shutil.copytree(reference[1], tmp_path / "ref")
    ckpts = tmp_path / "ref" / "checkpoints"
    shutil.rmtree(ckpts / "step00000012")
    (ckpts / "latest.json").write_text(json.dumps({"tag": "step00000008", "step": 8}))
    _run(SMALL[:-2] + ["--output-dir", str(tmp_path), "--run-name", "ref", "--steps", "10", "--resume",
                       "--compile"], env=aot)
    continued = _records(tmp_path / "ref")
    assert [r["step"] for r in continued] == list(range(1, 11))
    assert json.loads((tmp_path / "ref" / "report.json").read_text())["compile_graphs"] == 1
    # same data, dropout masks and weights: only the traced graph's bf16 rounding differs
    for a, b in list(zip(ref[:4], resumed)) + list(zip(ref[8:10], continued[8:])):
        assert a["step"] == b["step"]
        assert b["loss"] == pytest.approx(a["loss"], abs=5e-3), (a["step"], a["loss"], b["loss"])
        if "eval_loss" in a and "eval_loss" in b:
            assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=5e-3)


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [1, 2, 3])
def test_two_process_deepspeed_matches_single_process(tmp_path, zero_stage):
    """deepspeed --num_gpus 2 (gloo on CPU), 1 worker each == 1 process with 2 workers and 2x accumulation.
    ZeRO-3 with every parameter partitioned (the small model's would all stay whole by default): the
    packed projections and the shared bias table are read outside their own modules' forward."""
    zero3 = ["--zero3-persistence-threshold", "0"] if zero_stage == 3 else []
    common = SMALL[:-2] + ["--steps", "4", "--tokens-per-step", "624", "--dropout", "0",
                           "--zero-stage", str(zero_stage), "--output-dir", str(tmp_path)] + zero3
    _run(common + ["--run-name", "one", "--num-workers", "2"])
    port = 29500 + os.getpid() % 1000 + zero_stage
    launcher = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", str(port)]
    _run(common + ["--run-name", "two"], launcher=launcher)
    assert not list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))  # removed at shutdown
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["world_size"] == 2 and (report["micro_batch"], report["grad_accum"]) == (4, 1)
    assert len(report["peak_memory_gib_per_rank"]) == 2 and report["peak_memory_gib"] == max(report["peak_memory_gib_per_rank"])
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-2)  # bf16
        if "eval_loss" in a:
            assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-2)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU check of the script (on a GPU host it trains Baseline)")
def test_gpu_train_script_both_phases_on_cpu(tmp_path):
    """scripts/gpu_train.sh (issue #6 evidence runs) with the Tiny preset: phase 1gpu writes one
    report, phase 2gpu two (ZeRO 1, 2, through the deepspeed launcher), each copied into $OUT with a
    summary and a logs archive."""
    env = {**_env(), "OUT": str(tmp_path / "out"), "MARCH_TRAIN_EXPERIMENT": "Tiny", "MARCH_TRAIN_STEPS": "3",
           "MARCH_TRAIN_TOKENS": "624", "MARCH_TRAIN_RESULTS": str(tmp_path / "results"),
           "MARCH_TRAIN_RUNS": str(tmp_path / "runs"),
           "MARCH_TRAIN_EXTRA": "--kernels eager --input-length 64 --micro-batch-size 4 --num-workers 1"}
    for phase in ("1gpu", "2gpu"):
        proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_train.sh"), phase], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=400, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert out == ["train_1gpu_logs.tar.gz", "train_1gpu_summary.txt", "train_2gpu_logs.tar.gz",
                   "train_2gpu_summary.txt", "train_tiny_1gpu.json", "train_tiny_2gpu_zero1.json",
                   "train_tiny_2gpu_zero2.json"]
    for name, world, stage in (("1gpu", 1, 1), ("2gpu_zero1", 2, 1), ("2gpu_zero2", 2, 2)):
        report = json.loads((tmp_path / "out" / f"train_tiny_{name}.json").read_text())
        assert (report["world_size"], report["zero_stage"], report["steps"], report["tokens_per_step"]) == \
            (world, stage, 3, 624)
        assert (tmp_path / "results" / f"train_tiny_{name}.json").is_file()
        assert not (tmp_path / "runs" / name / "checkpoints").exists()
    summary = (tmp_path / "out" / "train_2gpu_summary.txt").read_text()
    assert "2gpu_zero1: exit 0" in summary and "2gpu_zero2: exit 0" in summary and "compute budget" in summary


# --- GPU (run on the GPU host) --------------------------------------------------------------------

GPU_ARGS = ["--experiment", "Baseline", "--steps", "8", "--tokens-per-step", "262144", "--micro-batch-size", "64",
            "--eval-every", "8", "--checkpoint-every", "8", "--eval-samples", "128", "--no-progress"]


def _check_gpu_report(report, world):
    import math

    assert report["world_size"] == world and report["gpus"] == world and report["device"] != "cpu"
    assert report["peak_tflops_per_gpu"] is not None and 0 < report["mfu"] < 1  # the H200 is in the table
    assert report["peak_memory_gib"] > 0 and report["gpu_hours"] > 0
    assert math.isfinite(report["final_loss"]) and math.isfinite(report["final_eval_loss"])


@pytest.mark.gpu
def test_gpu_run_fused_kernels(tmp_path):
    _run(GPU_ARGS + ["--output-dir", str(tmp_path), "--run-name", "g1"], cpu=False, timeout=600)
    report = json.loads((tmp_path / "g1" / "report.json").read_text())
    _check_gpu_report(report, 1)
    assert report["kernels"] == "auto" and report["tokens_per_step"] >= 250000


@pytest.mark.gpu
def test_gpu_run_march_optimizer(tmp_path):
    """--optimizer march on the GPU: march's AdamW kernel under DeepSpeed's bf16 optimizer."""
    _run(GPU_ARGS + ["--optimizer", "march", "--output-dir", str(tmp_path), "--run-name", "gm"], cpu=False,
         timeout=600)
    report = json.loads((tmp_path / "gm" / "report.json").read_text())
    _check_gpu_report(report, 1)
    assert report["optimizer"] == "march"


@pytest.mark.gpu
def test_gpu_run_compiled(tmp_path):
    """--compile with inductor and march's fused kernels (custom ops): one graph, no breaks; the
    compile is in first_step_s, the compiled step time in step_s (compare test_gpu_run_fused_kernels)."""
    _run(GPU_ARGS + ["--compile", "--output-dir", str(tmp_path), "--run-name", "gc"], cpu=False, timeout=600)
    report = json.loads((tmp_path / "gc" / "report.json").read_text())
    _check_gpu_report(report, 1)
    assert (report["compile"], report["compile_backend"]) == (True, "inductor")
    assert (report["compile_graphs"], report["compile_graph_breaks"]) == (1, 0)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize("zero_stage", [1, 2])
def test_two_gpus_deepspeed(tmp_path, zero_stage):
    launcher = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2",
                "--master_port", str(29600 + zero_stage)]
    _run(GPU_ARGS + ["--zero-stage", str(zero_stage), "--output-dir", str(tmp_path), "--run-name", "g2"],
         launcher=launcher, cpu=False, timeout=600)
    _check_gpu_report(json.loads((tmp_path / "g2" / "report.json").read_text()), 2)


@pytest.mark.gpu
def test_gpu_real_out_of_memory_backs_off(tmp_path):
    """1024 × (512 + 114) tokens of Baseline in one micro-batch cannot fit in one GPU: the loop halves
    the micro-batch until it fits, with the same samples per step, and records every halving."""
    _run(["--experiment", "Baseline", "--steps", "2", "--tokens-per-step", str(1024 * 626),
          "--micro-batch-size", "1024", "--eval-every", "2", "--checkpoint-every", "2", "--eval-samples", "64",
          "--no-progress", "--output-dir", str(tmp_path), "--run-name", "oom"], cpu=False, timeout=600)
    report = json.loads((tmp_path / "oom" / "report.json").read_text())
    assert report["oom_events"] and report["micro_batch"] < 1024
    assert report["micro_batch"] * report["grad_accum"] == 1024 and report["tokens_per_step"] == 1024 * 626


@pytest.mark.parametrize("argv, message", [
    (["--steps", "-5"], "steps must be a positive int, got -5"),
    (["--zero-stage", "3", "--compile"], "compile does not work with zero_stage 3"),
    (["--estimate", "--steps", "0"], "steps must be a positive int, got 0"),
    (["--optimizer", "adam"], "optimizer must be one of ('torch', 'march'), got 'adam'"),
])
def test_bad_options_give_a_one_line_error(argv, message, capsys):
    import run as run_script

    assert run_script.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("run.py: error: ") and message in err and "Traceback" not in err
