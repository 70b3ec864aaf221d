"""The budget estimator (march.train.estimate) on the Tiny preset on CPU."""

import json

import pytest
import torch

from march.models.flops import training_flops
from march.train import estimate as est

SMALL = dict(experiment="Tiny", kernels="eager", input_length=32, micro_batch_size=4, tokens_per_step=160,
             steps=50)


def test_estimate_tiny_on_cpu():
    e = est.estimate(probe_steps=2, device="cpu", **SMALL)
    # 32 inputs -> 8 targets; 160 tokens = 4 samples = one micro-batch of 4
    assert (e["input_length"], e["target_length"]) == (32, 8)
    assert (e["micro_batch"], e["grad_accum"], e["samples_per_step"], e["tokens_per_step"]) == (4, 1, 4, 160)
    assert e["step_s"] == pytest.approx(e["grad_accum"] * e["probe_micro_s"] + e["probe_optimizer_s"])
    assert e["total_s"] == pytest.approx(50 * e["step_s"])
    assert e["cpu_hours"] == pytest.approx(e["total_s"] / 3600) and e["gpu_hours"] is None
    assert e["tokens_per_s"] == pytest.approx(160 / e["step_s"])
    assert e["s_per_1b_tokens"] == pytest.approx(1e9 / e["tokens_per_s"])
    assert 0 < e["probe_micro_s"] < 30 and e["probe_optimizer_s"] > 0
    from march.models import get_preset

    c = get_preset("Tiny")
    assert e["parameters"] == c.num_parameters()
    assert e["model_flops_per_step"] == 4 * training_flops(c, 32, 8)
    assert e["mfu"] is None and e["memory_gib_per_gpu"] is None  # CPU: peak unknown, activations unmeasured
    state = e["memory_breakdown_gib"]
    assert state["optimizer_fp32_master_m_v"] == pytest.approx(12 * c.num_parameters() / 2**30)
    json.dumps(e)  # serialisable
    assert "budget estimate: Tiny" in est.format_estimate(e)


def test_more_tokens_per_step_means_accumulation_and_longer_steps():
    e = est.estimate(probe_steps=1, device="cpu", **{**SMALL, "tokens_per_step": 480})  # 12 samples
    assert (e["micro_batch"], e["grad_accum"]) == (4, 3)
    assert e["step_s"] == pytest.approx(3 * e["probe_micro_s"] + e["probe_optimizer_s"])


def test_zero_partitions_the_model_state():
    one = est._model_state_gib(10**9, zero_stage=1, world=1)
    z1 = est._model_state_gib(10**9, zero_stage=1, world=4)
    z3 = est._model_state_gib(10**9, zero_stage=3, world=4)
    assert z1["optimizer_fp32_master_m_v"] == pytest.approx(one["optimizer_fp32_master_m_v"] / 4)
    assert z1["grads_fp32"] == one["grads_fp32"] and z3["grads_fp32"] == pytest.approx(one["grads_fp32"] / 4)
    assert z3["weights_bf16"] == pytest.approx(one["weights_bf16"] / 4)


def test_out_of_memory_halves_the_probed_micro_batch():
    from march.models import T5Model, get_preset

    class FakeOOM(T5Model):
        def forward(self, input_ids, **kw):
            if input_ids.shape[0] > 1:
                raise torch.cuda.OutOfMemoryError("simulated")
            return super().forward(input_ids, **kw)

    e = est.estimate(probe_steps=1, device="cpu", model_factory=lambda cfg: FakeOOM(get_preset("Tiny"), kernels="eager"),
                     **SMALL)
    assert (e["micro_batch"], e["grad_accum"]) == (1, 4)
    assert [ev["micro_to"] for ev in e["oom_events"]] == [2, 1]


def test_cli(capsys):
    assert est.main(["--experiment", "Tiny", "--kernels", "eager", "--input-length", "32", "--micro-batch-size", "2",
                     "--tokens-per-step", "80", "--steps", "7", "--probe-steps", "1", "--json", "--estimate"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["experiment"], out["steps"], out["micro_batch"], out["tokens_per_step"]) == ("Tiny", 7, 2, 80)
    with pytest.raises(ValueError, match="probe_steps"):
        est.estimate(probe_steps=0, device="cpu", **SMALL)


def test_estimate_with_compile(monkeypatch):
    """--estimate --compile probes the compiled model (the warm-up step compiles; aot_eager here,
    inductor on a GPU), as the loop would run it."""
    monkeypatch.setenv("MARCH_COMPILE_BACKEND", "aot_eager")
    e = est.estimate(probe_steps=1, device="cpu", compile=True, **SMALL)
    assert e["compile"] is True and e["step_s"] > 0
    assert "compiled" in est.format_estimate(e)
    torch._dynamo.reset()
