"""The GPU diagnostics' pure parts on CPU: kernel-name grouping and GPU-idle accounting of
benchmarks/profile_step.py, the candidate lists of benchmarks/probe_attention.py, the GEMM list of
benchmarks/gemm_shapes.py (the profiles and timings themselves need a GPU)."""

import json

import pytest
import torch

from benchmarks.profile_step import _after_memsets, _idle, group_of


@pytest.mark.parametrize("name,group", [
    ("_t5_attn_bwd_dkdv_kernel", "attention"),
    ("_key_range_kernel", "attention"),  # (before session 17; now in _t5_attn_prepare_kernel)
    ("_t5_attn_prepare_kernel", "attention"),
    ("_bias_rows_kernel", "attention"),
    ("_t5_attn_bwd_key_mean_kernel", "attention"),
    ("_dropout_bits_kernel", "attention"),
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "matmul"),
    ("_tma_kernel", "matmul"),  # march.kernels.relu_matmul's GEMM
    ("_ce_fwd_kernel", "cross_entropy"),
    ("Memset (Unknown)", "copy / fill"),
    ("_rms_norm_bwd_kernel", "rms_norm"),
    ("triton_poi_fused__unsafe_view_native_dropout_rms_norm_fwd_view_6", "rms_norm"),
    ("_glu_fwd_kernel", "glu / activation"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdam>", "optimizer"),
    ("triton_per_fused_add_mean_1", "inductor fused"),
    ("something_else", "other"),
])
def test_group_of(name, group):
    assert group_of(name) == group


def test_idle_sums_gaps_between_kernels_overlaps_included():
    # a: 0-10, b: 5-20 (overlaps a), gap 10, c: 30-40, gap 1, d: 41-50; two steps profiled
    spans = [(30, 40, "c"), (0, 10, "a"), (5, 20, "b"), (41, 50, "d")]
    out = _idle(spans, steps=2)
    assert out["idle_ms_per_step"] == pytest.approx(11 / 1e3 / 2)
    assert out["largest_gaps"][0] == {"us": 10, "after": "b", "before": "c"}
    assert (out["short_gaps_per_step"], out["short_gap_us_median"]) == (1, 10)  # both < 20 µs
    assert out["short_gaps_ms_per_step"] == pytest.approx(11 / 1e3 / 2)
    out = _idle([(0, 10, "a"), (40, 50, "b"), (52, 60, "c")], steps=1)  # a 30 µs gap is not short
    assert (out["short_gaps_per_step"], out["short_gaps_ms_per_step"]) == (1, pytest.approx(0.002))
    assert _idle([], steps=1)["idle_ms_per_step"] == 0


def test_after_memsets_attributes_each_memset_to_the_next_kernel():
    # two steps: memset -> gemm (gap 6 µs) twice, memset -> other (gap 1 µs) once; a memset last is not counted
    spans = [(0, 1, "Memset (Unknown)"), (7, 20, "gemm_a"), (21, 22, "Memset (Unknown)"), (28, 40, "gemm_a"),
             (40, 41, "Memset (Unknown)"), (42, 50, "other"), (60, 61, "Memset (Unknown)")]
    out = _after_memsets(spans, steps=2)
    assert out["memsets_per_step"] == 1.5
    assert out["gap_after_memsets_ms_per_step"] == pytest.approx(13 / 1e3 / 2)
    assert out["after_memsets"][0] == {"next": "gemm_a", "per_step": 1.0, "gap_us_mean": 6.0}
    assert out["after_memsets"][1]["next"] == "other"


def test_probe_explicit_candidates(monkeypatch):
    """MARCH_PROBE_CANDIDATES: the named kernels' lists (register caps kept), every other kernel at
    its default; an unknown kernel is refused by name."""
    import benchmarks.probe_attention as probe

    attn = probe.attn
    lists = '{"dq_dropout": [[64, 64, 4, 3, 168], [64, 64, 4, 2]], "fwd:128": [[64, 64, 4, 3]]}'
    chosen = probe._explicit_candidates(lists)
    assert chosen[("dq_dropout", 64)] == [(64, 64, 4, 3, 168), (64, 64, 4, 2)]
    assert chosen[("fwd", 128)] == [(64, 64, 4, 3)]
    assert chosen[("dq", 64)] == attn._TUNE[("dq", 64)][:1]
    with pytest.raises(ValueError, match="dqq"):
        probe._explicit_candidates('{"dqq": [[64, 64, 4, 3]]}')


@pytest.mark.parametrize("preset", ["Baseline", "GELUGatedLinearUnit", "T5v1_1Base", "Tiny"])
def test_step_gemms_sum_to_the_flop_formula(preset):
    """benchmarks/gemm_shapes.py's GEMM list (fwd, dx, dW of each) has exactly the matmul FLOPs of
    march.models.flops (everything but attention)."""
    from benchmarks.gemm_shapes import step_gemms
    from march.models import get_preset
    from march.models.flops import flop_breakdown

    config = get_preset(preset)
    gemms = step_gemms(config, batch=3, input_length=37, target_length=11)
    total = sum(3 * 2 * g["M"] * g["N"] * g["K"] * g["count"] for g in gemms)
    f = flop_breakdown(config, 37, 11)
    assert total == 3 * 3 * (f.encoder_matmul + f.decoder_matmul + f.lm_head)


def test_gemm_shapes_cli_smoke(tmp_path, capsys):
    from benchmarks import gemm_shapes

    out = tmp_path / "gemms.json"
    gemm_shapes.main(["--preset", "Tiny", "--batch", "1", "--input", "8", "--target", "4", "--out", str(out)])
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 3 * 12 and result["step_matmul_ms"] > 0
    # on CPU there is no device timeline: no kernels named, no memsets counted
    assert all(r["kernels"] == [] and r["memsets"] == 0 for r in result["rows"])
    assert result["step_memsets_by_blas"] == {"default": 0}
    assert set(result["env"]) == {"TORCH_BLAS_PREFER_CUBLASLT", "CUBLAS_WORKSPACE_CONFIG", "CUBLASLT_WORKSPACE_SIZE"}
    printed = capsys.readouterr().out
    assert "matmul time of one step" in printed and "memsets in one step's GEMMs, default: 0" in printed


def test_summarize_kernels_counts_memsets_and_keeps_the_rest_in_order():
    from benchmarks.gemm_shapes import summarize_kernels

    names = ["Memset (Unknown)", "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "Memset (Device)",
             "void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16>" + "x" * 100]
    out = summarize_kernels(names)
    assert out["memsets"] == 2
    assert out["kernels"][0] == names[1] and out["kernels"][1] == names[3][:80]
    assert summarize_kernels([]) == {"kernels": [], "memsets": 0}


def test_gemm_shapes_compares_blas_settings_and_restores_them(tmp_path, capsys):
    """--blas times each product once per setting; torch's settings are restored afterwards; an
    unknown setting is refused by name."""
    import torch

    from benchmarks import gemm_shapes

    before = (torch.backends.cuda.preferred_blas_library(),
              torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)
    out = tmp_path / "gemms.json"
    gemm_shapes.main(["--preset", "Tiny", "--batch", "1", "--input", "8", "--target", "4",
                      "--blas", "default,no-reduced,cublaslt", "--out", str(out)])
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 3 * 3 * 12
    assert set(result["step_matmul_ms_by_blas"]) == {"default", "no-reduced", "cublaslt"}
    assert result["step_matmul_ms_best_of"] <= min(result["step_matmul_ms_by_blas"].values())
    assert len(result["best_blas"]) == 3 * 12
    assert (torch.backends.cuda.preferred_blas_library(),
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction) == before
    with pytest.raises(SystemExit):
        gemm_shapes.main(["--preset", "Tiny", "--blas", "default,fastest"])
    assert "unknown --blas setting 'fastest'" in capsys.readouterr().err


def test_probe_optimizer_smoke_and_bad_impl(tmp_path, capsys):
    """benchmarks/probe_optimizer.py on CPU (Tiny): one row per implementation with the update's
    traffic (14 bytes a bf16 parameter); an unknown implementation is refused by name. (The
    compiled row is left out here: inductor's CPU compile of the step takes ~30 s.)"""
    from benchmarks import probe_optimizer

    out = tmp_path / "opt.json"
    probe_optimizer.main(["--impls", "fused,foreach,fused_flat", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["preset"] == "Tiny" and [r["impl"] for r in result["rows"]] == ["fused", "foreach", "fused_flat"]
    assert result["bytes_per_step"] == 14 * result["params"] and result["params"] > 1e6
    assert all(r["ms"] > 0 and r["TB/s"] > 0 for r in result["rows"])
    assert "GB an update" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        probe_optimizer.main(["--impls", "fused,apex"])
    assert "unknown --impls entry 'apex'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="apex"):
        probe_optimizer._optimizer_step("apex", [])


def test_step_host_timeline_phase_times():
    """Each phase's host time runs from the previous mark (the step's start or the previous phase)."""
    from benchmarks.step_host_timeline import phase_times, summarise

    marks = [("start", 0.0), ("forward", 0.001), ("backward", 0.003), ("optimizer", 0.0035), ("zero_grad", 0.004),
             ("start", 0.010), ("forward", 0.012), ("backward", 0.0125), ("optimizer", 0.0725), ("zero_grad", 0.073)]
    times = phase_times(marks)
    assert times["forward"] == pytest.approx([1.0, 2.0])
    assert times["optimizer"] == pytest.approx([0.5, 60.0])  # the step where the update waited
    assert summarise(times)["optimizer"] == pytest.approx({"median": 30.25, "max": 60.0})
    with pytest.raises(ValueError, match="phase 'forward' marked before any step start"):
        phase_times([("forward", 0.0)])


def test_make_step_marks_each_phase_in_order():
    """The e2e step calls ``mark`` as each phase returns, in order, once a step (the timeline's hook)."""
    from benchmarks import test_bench_e2e as e2e
    from benchmarks.step_host_timeline import PHASES
    from march.models import get_preset

    config = get_preset("Tiny")
    model, optimizer, forward = e2e._build("eager", config)
    marks = []
    step = e2e.make_step("eager", forward, optimizer, *e2e._batch(config.vocab_size), mark=marks.append)
    step()
    step()
    assert marks == list(PHASES) * 2
    assert all(p.grad is None for p in model.parameters())  # zero_grad ran after the last mark's phase


def test_step_host_timeline_host_profile_and_skips(monkeypatch):
    """The cProfile summary names the step's own functions with per-step calls; inductor's cudagraph
    skip messages are collected (the GPU parts, synchronize, patched out)."""
    from torch._inductor import cudagraph_utils

    from benchmarks import step_host_timeline as tl

    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)

    def busy_step():
        sum(i * i for i in range(2000))

    rows = tl._host_profile(busy_step, n=2)
    assert any("busy_step" in r["function"] and r["calls"] == 1 for r in rows)
    assert all(r["own_ms"] >= 0 and r["total_ms"] >= r["own_ms"] - 1e-9 for r in rows)
    handler = tl._collect_cudagraph_skips()
    try:
        cudagraph_utils.log_cudagraph_skip_and_bump_counter("skipping cudagraphs due to a test")
        assert handler.messages == ["skipping cudagraphs due to a test"]
        assert tl._inductor_counters()["cudagraph_skips"] >= 1
    finally:
        cudagraph_utils.cudagraphs_log.removeHandler(handler)
        torch._logging.set_logs()
