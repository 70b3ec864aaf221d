"""Programmatic dependent launch (``march.kernels._pdl``, MARCH_PDL=1): the switch, its guards, and
on a GPU that it changes no bit of any result, eagerly or under CUDA-graph capture."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch
import triton.language as tl

import march.kernels._pdl as pdl

KERNELS_DIR = pathlib.Path(pdl.__file__).parent
TEST_HOOKS = {"_keep_probe_kernel", "_bucket_probe_kernel"}  # launched by tests only, never in a stream of work


def test_switch_parses_env(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for value, expected in (("1", True), ("0", False), ("", False), (" 1 ", True)):
        monkeypatch.setenv("MARCH_PDL", value)
        assert pdl.pdl_requested() is expected
    monkeypatch.delenv("MARCH_PDL")
    assert pdl.pdl_requested() is False
    monkeypatch.setenv("MARCH_PDL", "yes")
    with pytest.raises(ValueError, match="MARCH_PDL='yes'"):
        pdl.pdl_requested()


def test_off_under_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("MARCH_PDL", "1")
    assert pdl.pdl_requested() is False


def test_launch_options(monkeypatch):
    assert pdl.launch_options(torch.device("cpu")) == {}
    monkeypatch.setattr(pdl, "PDL", tl.constexpr(True))
    assert pdl.launch_options(torch.device("cpu")) == {}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))
    pdl._supported.cache_clear()
    assert pdl.launch_options(torch.device("cuda", 0)) == {"launch_pdl": True}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA A100-SXM4-80GB")
    pdl._supported.cache_clear()
    with pytest.raises(RuntimeError, match=r"compute capability 9\.0.*cuda:0 \(NVIDIA A100-SXM4-80GB\) is 8\.0"):
        pdl.launch_options(torch.device("cuda", 0))
    pdl._supported.cache_clear()


def _jit_kernels():
    """(file, FunctionDef) of every @triton.jit function named *_kernel under march/kernels/."""
    for path in sorted(KERNELS_DIR.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_kernel") and any(
                    "jit" in ast.unparse(d) for d in node.decorator_list):
                yield path, node


def test_every_kernel_waits_first():
    """A PDL-launched kernel may start while the one before it still runs: its first statement must
    be the wait, or a load could read stale data or a store land under a buffer still being read."""
    kernels = [(path, node) for path, node in _jit_kernels() if node.name not in TEST_HOOKS]
    assert len(kernels) >= 20
    for path, node in kernels:
        body = node.body[1:] if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value,
                                                                                  ast.Constant) else node.body
        first = ast.unparse(body[0])
        assert first == "grid_dependency_sync()", f"{path.name}:{node.name} starts with {first!r}"


def _launches(tree):
    """Every ``X[grid](...)`` call (a kernel launch: a call of a subscript)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript):
            yield node


def test_every_launch_passes_launch_options():
    found = 0
    for path in sorted(KERNELS_DIR.glob("*.py")):
        for call in _launches(ast.parse(path.read_text())):
            name = ast.unparse(call.func.value)
            if name in TEST_HOOKS:
                continue
            found += 1
            spread = [ast.unparse(k.value) for k in call.keywords if k.arg is None]
            # (a forwarder passing its caller's **kwargs on, as t5_attention._Fixed, is not a call site)
            assert any(s.startswith("launch_options(") or s == "kwargs" for s in spread), \
                f"{path.name}:{call.lineno} launches {name} without **launch_options(device)"
    assert found >= 20


# A chain of march ops (norm with dropout, attention with bias, padding and dropout, the ReLU
# feedforward, cross-entropy), forward and backward, eagerly and replayed from a CUDA graph.
_CHAIN = textwrap.dedent("""
    import sys, torch
    from march.kernels import add_rms_norm, cross_entropy, feedforward, t5_attention

    seeds = [torch.tensor([n], device="cuda") for n in (3, 5, 7)]  # on the device: capturable

    def chain(x, res, w, q, k, v, table, kpm, w_in, w_out, logits, labels, do):
        y, s = add_rms_norm(x, res, w, dropout_p=0.1, seed=seeds[0])
        o = t5_attention(q, k, v, table, key_padding_mask=kpm, dropout_p=0.1, seed=seeds[1])
        f = feedforward(y, w_in, w_out, dropout_p=0.1, seed=seeds[2])
        loss = cross_entropy(logits, labels) + (o * do).float().sum() + f.float().square().mean() + s.float().mean()
        grads = torch.autograd.grad(loss, (x, res, w, q, k, v, table, w_in, w_out, logits))
        # Detached: an output that kept its grad_fn would keep the leaves' AccumulateGrad nodes alive, with
        # the stream they were made on (the legacy default stream, eagerly); the capture would reuse them,
        # and the engine's closing sync with that stream invalidates the capture (cudaErrorStreamCaptureImplicit).
        return tuple(t.detach() for t in (y, s, o, f, loss, *grads))

    g = torch.Generator(device="cuda").manual_seed(0)
    bf16 = dict(device="cuda", dtype=torch.bfloat16)
    r = lambda *shape, scale=1.0: (torch.randn(*shape, generator=g, **bf16) * scale).requires_grad_()
    B, H, L, D, M, V, F = 4, 12, 512, 64, 2048, 32128, 3072
    inputs = [r(M, 768), r(M, 768), r(768), r(B, H, L, D), r(B, H, L, D), r(B, H, L, D), r(32, H),
              torch.arange(L, device="cuda")[None, :] < torch.tensor([[L], [400], [97], [1]], device="cuda"),
              r(F, 768, scale=0.03), r(768, F, scale=0.03), r(M, V),
              torch.randint(0, V, (M,), generator=g, device="cuda"), torch.randn(B, H, L, D, generator=g, **bf16)]
    eager = chain(*inputs)
    if sys.argv[2] == "eager":
        torch.cuda.synchronize()
        torch.save({"eager": [t.detach().cpu() for t in eager]}, sys.argv[1])
        sys.exit(0)
    for _ in range(2):  # warm-up on a side stream, as CUDA-graph capture needs
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            chain(*inputs)
        torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = chain(*inputs)
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    torch.save({"eager": [t.detach().cpu() for t in eager], "graph": [t.detach().cpu() for t in captured]},
               sys.argv[1])
""")


def _run_chain(tmp_path, mode: str) -> dict:
    """The chain with MARCH_PDL=0 and =1, each in its own process (the switch is read at import)."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("programmatic dependent launch needs sm_90+")
    results = {}
    for flag in ("0", "1"):
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"MARCH_PDL": flag}
        out = tmp_path / f"pdl{flag}_{mode}.pt"
        subprocess.run([sys.executable, "-c", _CHAIN, str(out), mode], env=env, check=True, timeout=600,
                       cwd=pathlib.Path(__file__).parent.parent)
        results[flag] = torch.load(out)
    return results


def _assert_identical(results: dict, mode: str) -> None:
    for i, (off, on) in enumerate(zip(results["0"][mode], results["1"][mode])):
        assert not off.float().isnan().any(), f"{mode} output {i} has NaN"
        assert torch.equal(off, on), f"{mode} output {i} differs with MARCH_PDL=1"


@pytest.mark.gpu
def test_pdl_changes_no_bit_eager(tmp_path):
    """Every output and gradient of the chain bit-identical with and without PDL. A kernel that
    touched memory before its wait would race with its predecessor and show here as a difference."""
    _assert_identical(_run_chain(tmp_path, "eager"), "eager")


@pytest.mark.gpu
def test_pdl_changes_no_bit_graph(tmp_path):
    """The same from CUDA-graph replays (how the compiled training step runs), and replays equal to
    the eager run."""
    results = _run_chain(tmp_path, "graph")
    _assert_identical(results, "eager")
    _assert_identical(results, "graph")
    for i, (eager, graph) in enumerate(zip(results["1"]["eager"], results["1"]["graph"])):
        assert torch.equal(eager, graph), f"output {i}: graph replay differs from the eager run under MARCH_PDL=1"
