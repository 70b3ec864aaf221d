"""T5Model: loss semantics, KV-cached decoding, generation, fused (Triton) vs eager equality."""

import pytest
import torch
import torch.nn.functional as F

from march.models import T5Model, TransformerConfig, get_preset

SMALL = TransformerConfig(d_model=64, num_layers=2, num_decoder_layers=3, num_heads=4, d_kv=16, d_ff=128,
                          vocab_size=128, dropout=0.0)


def _batch(B=3, Lin=13, Lout=7, vocab=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, vocab, (B, Lin), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, Lin - 4:] = 0
    labels = torch.randint(2, vocab, (B, Lout), generator=g)
    labels[0, Lout - 2:] = -100
    return input_ids, attention_mask, labels


def _model(config=SMALL, kernels="eager", factor=3.0, seed=0):
    torch.manual_seed(seed)
    # A wider init than T5's makes random models' predictions vary from token to token.
    return T5Model(config.replace(initializer_factor=factor), kernels=kernels).eval()


def test_forward_loss_semantics():
    model = _model()
    input_ids, attention_mask, labels = _batch()
    out = model(input_ids, attention_mask, labels=labels)
    assert out.logits.shape == (3, 7, 128)
    # decoder inputs default to labels shifted right with start = pad = 0 and -100 -> 0
    dec = model.shift_right(labels)
    assert dec[:, 0].eq(0).all() and torch.equal(dec[:, 1:], labels[:, :-1].clamp(min=0))
    same = model(input_ids, attention_mask, decoder_input_ids=dec, labels=labels)
    torch.testing.assert_close(same.logits, out.logits, rtol=0, atol=0)
    mask = labels != -100
    manual = F.cross_entropy(out.logits[mask].double(), labels[mask]).float()
    torch.testing.assert_close(out.loss, manual, rtol=1e-6, atol=0)
    assert model(input_ids, attention_mask, decoder_input_ids=dec).loss is None
    with pytest.raises(ValueError, match="decoder_input_ids or labels"):
        model(input_ids)
    loss_only = model(input_ids, attention_mask, labels=labels, return_logits=False)
    assert loss_only.logits is None and torch.equal(loss_only.loss, out.loss)
    with pytest.raises(ValueError, match="return_logits=False needs labels"):
        model(input_ids, attention_mask, decoder_input_ids=dec, return_logits=False)


def test_padding_is_masked():
    """Changing padded input tokens must not change anything."""
    model = _model()
    input_ids, attention_mask, labels = _batch()
    other = input_ids.masked_fill(attention_mask == 0, 77)
    a = model(input_ids, attention_mask, labels=labels).logits
    b = model(other, attention_mask, labels=labels).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kernels", ["eager", "triton"])
def test_int_and_bool_masks_agree(kernels):
    """Integer masks are converted to bool once per stack (not in every attention call): the same
    logits as a bool mask; with the fused kernels a float mask is still refused by the attention's
    own check (an additive 0 / -inf mask would otherwise read inverted)."""
    model = _model(SMALL.replace(d_kv=32), kernels=kernels).to(torch.bfloat16)  # the kernels need d ≥ 32
    input_ids, attention_mask, labels = _batch()
    a = model(input_ids, attention_mask, labels=labels).logits
    b = model(input_ids, attention_mask.bool(), labels=labels).logits
    assert torch.equal(a, b)
    if kernels == "triton":
        with pytest.raises(TypeError, match="key_padding_mask"):
            model(input_ids, attention_mask.float(), labels=labels)


def test_head_conventions():
    """Tied head: (out · d^-0.5) @ Eᵀ; untied: lm_head(out) unscaled."""
    input_ids, attention_mask, labels = _batch()
    tied = _model()
    untied = _model(SMALL.replace(tie_word_embeddings=False, scale_decoder_outputs=None))
    assert tied.lm_head is None and untied.lm_head is not None and not untied.config.scale_decoder_outputs
    for model in (tied, untied):
        out = model(input_ids, attention_mask, labels=labels)
        enc = model.encode(input_ids, attention_mask)
        hidden, _ = model.decoder(model.shared(model.shift_right(labels)), None, enc, attention_mask)
        if model.lm_head is None:
            expected = (hidden * 64**-0.5) @ model.shared.weight.T
        else:
            expected = model.lm_head(hidden)
        torch.testing.assert_close(out.logits, expected, rtol=1e-6, atol=1e-6)
    assert tied.num_parameters() + 128 * 64 == untied.num_parameters()


@pytest.mark.parametrize("gated", [False, True])
def test_kv_cache_matches_full_decode(gated):
    """Token-by-token decoding with the cache gives the teacher-forced logits of a full decode.
    In float64, so that the comparison is strict (fp32 differs by ~1e-5 of the logit scale)."""
    config = SMALL.replace(feed_forward="geglu_tanh") if gated else SMALL
    model = _model(config).double()
    input_ids, attention_mask, labels = _batch()
    dec = model.shift_right(labels)
    enc = model.encode(input_ids, attention_mask)
    full, _ = model.decode(dec, enc, attention_mask)
    past, steps = None, []
    for t in range(dec.shape[1]):
        logits, past = model.decode(dec[:, t:t + 1], enc, attention_mask, past_key_values=past, use_cache=True)
        steps.append(logits)
    assert len(past) == config.num_decoder_layers
    self_k = past[0][0][0]
    assert self_k.shape == (3, config.num_heads, dec.shape[1], config.d_kv)  # (B, H, Lpast, d_kv)
    err = (torch.cat(steps, 1) - full).abs().max().item()
    assert err <= 1e-10 * full.abs().max().item(), (err, full.abs().max().item())


def test_generate_cached_equals_uncached():
    model = _model()
    input_ids, attention_mask, _ = _batch(seed=3)
    cached = model.generate(input_ids, attention_mask, max_new_tokens=10)
    uncached = model.generate(input_ids, attention_mask, max_new_tokens=10, use_cache=False)
    assert torch.equal(cached, uncached)
    assert cached.shape[0] == 3 and cached[:, 0].eq(0).all() and cached.shape[1] <= 11
    assert len(set(cached[:, 1:].flatten().tolist())) > 3  # not a degenerate repeat


def test_generate_stops_at_eos_and_pads():
    model = _model(SMALL.replace(tie_word_embeddings=False, scale_decoder_outputs=None))
    input_ids, attention_mask, _ = _batch(seed=3)
    ids = model.generate(input_ids, attention_mask, max_new_tokens=10)
    first = ids[0, 1].item()
    assert first != 1
    with torch.no_grad():  # swap the head rows of row 0's first token and eos: row 0 now ends at once
        model.lm_head.weight[[1, first]] = model.lm_head.weight[[first, 1]]
    ids = model.generate(input_ids, attention_mask, max_new_tokens=10)
    assert ids[0].tolist() == [0, 1] + [0] * (ids.shape[1] - 2)  # eos, then pad
    for row in ids.tolist():
        if 1 in row[1:]:
            assert all(t == 0 for t in row[row.index(1, 1) + 1:])
    # when every row has finished, generation stops early
    assert model.generate(input_ids[:1], attention_mask[:1], max_new_tokens=10).tolist() == [[0, 1]]
    assert model.generate(input_ids, attention_mask, max_new_tokens=0).shape == (3, 1)


def test_sampling():
    model = _model()
    input_ids, attention_mask, _ = _batch(seed=4)
    sample = lambda seed, **kw: model.generate(  # noqa: E731
        input_ids, attention_mask, max_new_tokens=8, do_sample=True,
        generator=torch.Generator().manual_seed(seed), **kw)
    a, b = sample(1), sample(1)
    assert torch.equal(a, b)  # the generator makes it reproducible
    assert not torch.equal(sample(1, temperature=5.0), sample(2, temperature=5.0))
    # cache or no cache, the same draws
    assert torch.equal(sample(7, top_k=5), sample(7, top_k=5, use_cache=False))
    # top_k=1 is greedy
    assert torch.equal(sample(3, top_k=1), model.generate(input_ids, attention_mask, max_new_tokens=8))
    with pytest.raises(ValueError, match="temperature"):
        sample(1, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        sample(1, top_k=0)


def test_kernels_argument_checked():
    with pytest.raises(ValueError, match="kernels must be one of"):
        T5Model(SMALL, kernels="cuda")


def test_tiny_preset_runs():
    model = T5Model(get_preset("Tiny"), kernels="eager")
    input_ids, attention_mask, labels = _batch(B=2, Lin=9, Lout=5, vocab=32128)
    model.train()
    out = model(input_ids, attention_mask, labels=labels)
    assert out.logits.shape == (2, 5, 32128) and torch.isfinite(out.loss)
    assert abs(out.loss.item() - torch.log(torch.tensor(32128.0)).item()) < 3.0
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _tiny_fused_config(feed_forward):
    # One layer per stack, d_kv 32 (the attention kernel's smallest head dim): the interpreter is slow.
    return TransformerConfig(d_model=64, num_layers=1, num_heads=2, d_kv=32, d_ff=96, vocab_size=96,
                             feed_forward=feed_forward, dropout=0.0)


def _loss_and_grads(model, batch):
    model.zero_grad()
    out = model(*batch[:2], labels=batch[2])
    out.loss.backward()
    return out, {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("feed_forward", ["relu", "geglu_tanh"])
def test_fused_equals_eager_fp32_interpreter(feed_forward):
    """kernels="auto" in fp32: fused RMSNorm, residual add + norm and FF kernels (Triton interpreter);
    attention takes its reference in fp32 (the attention kernel is fp16/bf16-only)."""
    config = _tiny_fused_config(feed_forward)
    eager = _model(config, "eager", factor=1.0)
    fused = T5Model(config, kernels="auto").eval()
    fused.load_state_dict(eager.state_dict())
    batch = _batch(B=2, Lin=16, Lout=8, vocab=96)
    out_e, grads_e = _loss_and_grads(eager, batch)
    out_f, grads_f = _loss_and_grads(fused, batch)
    assert (out_f.logits - out_e.logits).abs().max().item() <= 1e-5 * out_e.logits.abs().max().item()
    torch.testing.assert_close(out_f.loss, out_e.loss, rtol=1e-5, atol=0)
    for name, g in grads_e.items():
        assert _rel(grads_f[name], g) <= 1e-5, f"{name}: relative grad error {_rel(grads_f[name], g):.2e}"


@pytest.mark.parametrize("feed_forward", ["relu", "geglu_tanh"])
def test_fused_vs_eager_bf16_interpreter(feed_forward):
    """kernels="triton" in bf16 (every op fused, attention included; Triton interpreter) against an
    fp32 eager oracle: loss and gradient errors within 2x those of the bf16 eager model (+ a floor)."""
    config = _tiny_fused_config(feed_forward)
    oracle = _model(config, "eager", factor=1.0)
    eager = T5Model(config, kernels="eager").to(torch.bfloat16).eval()
    fused = T5Model(config, kernels="triton").to(torch.bfloat16).eval()
    eager.load_state_dict(oracle.state_dict())
    fused.load_state_dict(oracle.state_dict())
    batch = _batch(B=2, Lin=16, Lout=8, vocab=96)
    out_o, grads_o = _loss_and_grads(oracle, batch)
    out_e, grads_e = _loss_and_grads(eager, batch)
    out_f, grads_f = _loss_and_grads(fused, batch)
    err_e, err_f = abs(out_e.loss.item() - out_o.loss.item()), abs(out_f.loss.item() - out_o.loss.item())
    assert err_f <= 2 * err_e + 1e-3 * out_o.loss.item(), (err_f, err_e)
    for name, g in grads_o.items():
        e, f = _rel(grads_e[name], g), _rel(grads_f[name], g)
        assert f <= 2 * e + 2e-3, f"{name}: fused rel err {f:.3e} vs eager {e:.3e}"


def test_fused_dropout_seeds_one_draw_reproducible():
    """Training with dropout, fused (fp32, interpreter): each stack draws its fused dropouts' seeds in
    one randint (one per sublayer's op, then one per add_rms_norm), all distinct; torch.manual_seed
    reproduces the loss and gradients; another seed gives another loss; eval or eager draws none."""
    config = TransformerConfig(d_model=64, num_layers=1, num_heads=2, d_kv=32, d_ff=96, vocab_size=96,
                               dropout=0.3)
    model = T5Model(config, kernels="auto").train()
    seeds = model.decoder._dropout_seeds(4, torch.device("cpu"))
    assert len(seeds) == 4 and all(t.shape == (1,) and t.dtype == torch.int64 for t in seeds)
    assert len({int(t) for t in seeds}) == 4
    assert model.eval().decoder._dropout_seeds(4, torch.device("cpu")) == [None] * 4
    assert T5Model(config, kernels="eager").train().encoder._dropout_seeds(2, torch.device("cpu")) == [None] * 2
    model.train()
    batch = _batch(B=2, Lin=16, Lout=8, vocab=96)
    torch.manual_seed(1)
    out_a, grads_a = _loss_and_grads(model, batch)
    torch.manual_seed(1)
    out_b, grads_b = _loss_and_grads(model, batch)
    torch.manual_seed(2)
    out_c, _ = _loss_and_grads(model, batch)
    assert torch.equal(out_a.loss, out_b.loss) and all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)
    assert not torch.equal(out_a.loss, out_c.loss)


# --- GPU (H200): the real presets, bf16, fused vs eager -------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["Baseline", "T5v1_1Base"])
def test_preset_fused_vs_eager_bf16_gpu(name):
    """bf16 fused vs bf16 eager, both judged against an fp32 eager oracle: the fused model's loss and
    gradient errors must be within 2x the eager bf16 errors (+ a small floor)."""
    config = get_preset(name)
    torch.manual_seed(0)
    oracle = T5Model(config, kernels="eager").cuda().eval()
    eager = T5Model(config, kernels="eager").cuda().to(torch.bfloat16).eval()
    fused = T5Model(config, kernels="triton").cuda().to(torch.bfloat16).eval()
    eager.load_state_dict(oracle.state_dict())
    fused.load_state_dict(oracle.state_dict())
    input_ids, attention_mask, labels = (t.cuda() for t in _batch(B=8, Lin=256, Lout=64, vocab=config.vocab_size))
    results = {}
    for key, model in (("oracle", oracle), ("eager", eager), ("fused", fused)):
        out = model(input_ids, attention_mask, labels=labels)
        out.loss.backward()
        results[key] = (out.loss.detach(), {n: p.grad for n, p in model.named_parameters()})
    loss_o, grads_o = results["oracle"]
    err_e = abs(results["eager"][0].item() - loss_o.item())
    err_f = abs(results["fused"][0].item() - loss_o.item())
    assert err_f <= 2 * err_e + 2e-3 * loss_o.item(), (err_f, err_e)
    rows = []  # (margin over the bound, name, fused err, eager err)
    for n, g in grads_o.items():
        e, f = _rel(results["eager"][1][n], g), _rel(results["fused"][1][n], g)
        rows.append((f - (2 * e + 2e-3), n, f, e))
    rows.sort(reverse=True)
    ratios = sorted(f / max(e, 1e-12) for _, _, f, e in rows)
    summary = (f"{name}: loss err fused {err_f:.2e} eager {err_e:.2e}; grad err ratio fused/eager median "
               f"{ratios[len(ratios) // 2]:.2f}, max {ratios[-1]:.2f}; worst: "
               + "; ".join(f"{n} {f:.2e} vs {e:.2e}" for _, n, f, e in rows[:5]))
    print(summary)
    assert rows[0][0] <= 0, summary
