"""The network: shapes, windows and shift masks, merging/expanding order, fast path == reference."""

import zlib

import pytest
import torch

from swin_unet.model.reference import RefDropPath, ReferenceSwinUnet
from swin_unet import SwinUnet
from swin_unet.model.attention import DropPath, shift_mask, shift_region_labels, window_partition
from swin_unet.model.layers import permute_tokens

TINY = dict(embed_dim=12, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), drop_path_rate=0.0)


def tiny(**kwargs) -> SwinUnet:
    torch.manual_seed(0)
    return SwinUnet(**{**TINY, "img_size": 64, "window_size": 2, **kwargs}).eval()


@pytest.mark.parametrize("img_size,window", [(224, 7), (256, 8), ((224, 448), 7), ((64, 128), 2)])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_output_shape(img_size, window, in_chans):
    model = tiny(img_size=img_size, window_size=window, in_chans=in_chans, num_classes=5)
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    with torch.no_grad():
        out = model(torch.randn(2, in_chans, h, w))
    assert out.shape == (2, 5, h, w)
    assert torch.isfinite(out).all()


def test_default_model_has_the_papers_parameter_count():
    model = SwinUnet(in_chans=3, num_classes=9)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 27.17
    # Stage geometry of the paper's 224 model: 96@56, 192@28, 384@14, 768@7, last stage unshifted.
    geometry = model.plan.stages
    assert [g.resolution for g in geometry] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert [g.shifts for g in geometry] == [(0, 3), (0, 3), (0, 3), (0, 0)]
    assert model.plan.mask(3) is None


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(img_size=(64, 128)),
    dict(img_size=96, window_size=3, num_heads=(3, 3, 3, 3)),
    dict(depths=(1, 2, 3, 2), drop_path_rate=0.0),
    # A decoder shallower or deeper than the encoder, of other parity (other last orders).
    dict(img_size=(64, 128), decoder_depths=(1, 3, 1)),
    dict(depths=(1, 2, 3, 2), decoder_depths=(2, 1, 4)),
])
def test_fast_path_equals_reference_forward_and_gradients(kwargs):
    kwargs = {**TINY, "img_size": 64, "window_size": 2, **kwargs}
    torch.manual_seed(1)
    ref = ReferenceSwinUnet(in_chans=3, num_classes=4, **kwargs)
    fast = SwinUnet(in_chans=3, num_classes=4, attention="explicit", **kwargs)
    result = fast.load_state_dict(ref.state_dict(), strict=False)
    assert result.missing_keys == []
    assert all(k.endswith(("relative_position_index", "attn_mask")) for k in result.unexpected_keys)
    size = fast.img_size
    x = torch.randn(2, 3, *size)
    target = torch.randn(2, 4, *size)
    ref_out, fast_out = ref(x), fast(x)
    assert (ref_out - fast_out).abs().max() < 1e-5
    (ref_out * target).sum().backward()
    (fast_out * target).sum().backward()
    ref_grads = dict(ref.named_parameters())
    for name, param in fast.named_parameters():
        ref_grad = ref_grads[name].grad
        assert (param.grad - ref_grad).abs().max() <= 1e-4 * (1 + ref_grad.abs().max()), name


def _same_draws_per_module(model, drop_type, log):
    """Seed the RNG before every call of a drop-path module from (its name, its call count):
    the two networks then draw the same per-sample keep masks module by module, whatever the
    order they run their blocks in. ``log[name]`` records the kept samples of each call."""
    for name, module in model.named_modules():
        if not isinstance(module, drop_type) or module.p == 0:
            continue  # the first encoder block and the last decoder block have rate 0
        log[name] = []

        def seed(mod, inputs, name=name):
            torch.manual_seed(zlib.crc32(f"{name}/{len(log[name])}".encode()))

        def record(mod, inputs, output, name=name):
            log[name].append(output.flatten(1).ne(0).any(1).tolist())

        module.register_forward_pre_hook(seed)
        module.register_forward_hook(record)


def test_fast_path_equals_reference_in_training_mode_with_drop_path():
    kwargs = {**TINY, "img_size": 64, "window_size": 2, "drop_path_rate": 0.5}
    torch.manual_seed(2)
    ref = ReferenceSwinUnet(in_chans=3, num_classes=4, **kwargs).train()
    fast = SwinUnet(in_chans=3, num_classes=4, attention="explicit", **kwargs).train()
    fast.load_state_dict(ref.state_dict(), strict=False)
    ref_masks, fast_masks = {}, {}
    _same_draws_per_module(ref, RefDropPath, ref_masks)
    _same_draws_per_module(fast, DropPath, fast_masks)
    x = torch.randn(6, 3, 64, 64)
    target = torch.randn(6, 4, 64, 64)
    ref_out, fast_out = ref(x), fast(x)
    assert fast_masks == ref_masks
    kept = [k for calls in fast_masks.values() for call in calls for k in call]
    # Every block with a rate > 0 drew (7 of 8 encoder, 5 of 6 decoder blocks; two branches
    # each), and some samples were dropped.
    assert len(kept) == 12 * 2 * 6 and 0 < sum(kept) < len(kept) - 1
    assert (ref_out - fast_out).abs().max() < 1e-5
    (ref_out * target).sum().backward()
    (fast_out * target).sum().backward()
    ref_grads = dict(ref.named_parameters())
    for name, param in fast.named_parameters():
        ref_grad = ref_grads[name].grad
        assert (param.grad - ref_grad).abs().max() <= 1e-4 * (1 + ref_grad.abs().max()), name
    # The masks matter: without them the outputs of the two differ.
    fast.eval()
    with torch.no_grad():
        assert (fast(x) - fast_out).abs().max() > 1e-3


def test_fused_attention_equals_explicit():
    model = tiny(img_size=96, window_size=3, num_heads=(3, 3, 3, 3), in_chans=1)
    x = torch.randn(3, 1, 96, 96)
    with torch.no_grad():
        model.attention = "explicit"
        explicit = model(x)
        model.attention = "sdpa"
        fused = model(x)
    assert (explicit - fused).abs().max() < 1e-5


def test_one_channel_summed_kernels_equal_three_channel_repeated_input():
    three = tiny(in_chans=3)
    one = tiny(in_chans=1)
    state = three.state_dict()
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"].sum(1, keepdim=True)
    one.load_state_dict(state)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert (one(x) - three(x.repeat(1, 3, 1, 1))).abs().max() < 1e-5


def test_shift_mask_separates_sub_regions_and_only_them():
    model = tiny(img_size=128, window_size=4, num_heads=(1, 1, 1, 1))
    level = 0
    g = model.plan.stages[level]
    assert g.shifts == (0, 2)
    mask = model.plan.mask(level)
    h, w = g.resolution
    # Independent labelling of the rolled map: a token's region is (row band, column band),
    # bands being [0, H-M), [H-M, H-s), [H-s, H).
    rows = torch.arange(h)
    cols = torch.arange(w)
    band = lambda i, n: (i >= n - g.window).long() + (i >= n - 2).long()  # noqa: E731
    labels = band(rows, h)[:, None] * 3 + band(cols, w)[None, :]
    assert torch.equal(labels, shift_region_labels(h, w, g.window, 2))
    windows = window_partition(labels.view(1, h, w, 1), g.window).flatten(1)
    same = windows[:, :, None] == windows[:, None, :]
    assert torch.equal(mask == 0, same)
    assert torch.all(mask[~same] == float("-inf"))
    # The original's value, from which the plan's -inf mask is derived.
    original = shift_mask(h, w, g.window, 2)
    assert torch.equal(original == 0, same) and torch.all(original[~same] == -100.0)
    # Windows away from the wrapped border see a single region: no masking at all.
    assert (mask[0] == 0).all()
    assert (mask[-1] != 0).any()


def _attention_dependence(block, mask, n_windows, window):
    """Which tokens' outputs change when one token of the block's input is perturbed."""
    n = window * window
    x = torch.randn(n_windows, n, block.norm1.normalized_shape[0])
    base = block.attn(block.norm1(x).view(-1, n, x.shape[-1]), mask)
    changed = torch.zeros(n_windows, n, n_windows, n, dtype=torch.bool)
    for w in range(n_windows):
        for j in range(n):
            y = x.clone()
            y[w, j] += 5.0 * torch.randn(x.shape[-1])
            out = block.attn(block.norm1(y).view(-1, n, y.shape[-1]), mask)
            changed[:, :, w, j] = (out - base).abs().amax(-1) > 1e-6
    return changed


def test_tokens_of_different_sub_regions_never_attend_to_each_other():
    model = tiny(img_size=64, window_size=4, num_heads=(1, 1, 1, 1))
    g = model.plan.stages[0]
    block = model.layers[0].blocks[1]
    assert block.shift == 2
    mask = model.plan.mask(0)
    changed = _attention_dependence(block, mask, mask.shape[0], g.window)
    labels = window_partition(shift_region_labels(*g.resolution, g.window, 2).view(1, *g.resolution, 1),
                              g.window).flatten(1)
    nw = mask.shape[0]
    for w in range(nw):
        same_region = labels[w][:, None] == labels[w][None, :]
        assert torch.equal(changed[w, :, w, :], same_region)
    # Never across windows.
    across = changed.clone()
    for w in range(nw):
        across[w, :, w, :] = False
    assert not across.any()


def test_unshifted_block_attends_within_its_whole_window_without_a_mask():
    model = tiny(img_size=64, window_size=4, num_heads=(1, 1, 1, 1))
    block = model.layers[0].blocks[0]
    assert block.shift == 0
    nw = (16 // 4) ** 2
    changed = _attention_dependence(block, None, nw, 4)
    for w in range(nw):
        assert changed[w, :, w, :].all()
        others = changed[w].clone()
        others[:, w, :] = False
        assert not others.any()


def test_patch_merging_gathers_neighbours_row_offset_first():
    model = tiny(img_size=64, window_size=2)
    plan = model.plan
    (h, w), (h2, w2) = plan.stages[0].resolution, plan.stages[1].resolution
    # Tokens of stage 0 carry their row-major index, arranged in the last block's order.
    from swin_unet.model.attention import window_order
    last = window_order(h, w, plan.stages[0].window, plan.stages[0].shifts[-1])
    tokens = last.view(1, -1, 1).float()
    merged = permute_tokens(tokens, *plan.get("merge0")).view(-1, 4)
    first = window_order(h2, w2, plan.stages[1].window, 0)
    r, c = first // w2, first % w2
    expected = torch.stack([(2 * r) * w + 2 * c, (2 * r + 1) * w + 2 * c,
                            (2 * r) * w + 2 * c + 1, (2 * r + 1) * w + 2 * c + 1], 1)
    assert torch.equal(merged.long(), expected)


def test_patch_expanding_doubles_resolution_and_splits_channels_row_offset_first():
    model = tiny(img_size=64, window_size=2)
    expand = model.layers_up[0]
    levels = len(model.depths)
    coarse, fine = model.plan.stages[levels - 1], model.plan.stages[levels - 2]
    x = torch.randn(2, coarse.resolution[0] * coarse.resolution[1], 12 << (levels - 1))
    out = expand(x, *model.plan.get(f"expand{levels - 1}"))
    assert out.shape == (2, 4 * x.shape[1], x.shape[2] // 2)
    # Straightforward rearrangement (h, w, (p1, p2, c)) -> (2h, 2w, c) of the row-major map.
    from swin_unet.model.attention import window_order
    h, w = coarse.resolution
    rowmajor_in = permute_tokens(x, torch.argsort(window_order(h, w, coarse.window, coarse.shifts[-1])),
                                 window_order(h, w, coarse.window, coarse.shifts[-1]))
    c = x.shape[2] // 2
    image = expand.expand(rowmajor_in).view(2, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
    image = expand.norm(image.reshape(2, 4 * h * w, c))
    order = window_order(*fine.resolution, fine.window, fine.shifts[0])
    assert (image[:, order] - out).abs().max() < 1e-6


def test_permutation_gradient_equals_index_select_gradient():
    x = torch.randn(2, 50, 3, requires_grad=True)
    perm = torch.randperm(50)
    inverse = torch.argsort(perm)
    grad = torch.randn(2, 50, 3)
    (permute_tokens(x, perm, inverse) * grad).sum().backward()
    fast = x.grad.clone()
    x.grad = None
    (x.index_select(1, perm) * grad).sum().backward()
    assert torch.equal(fast, x.grad)


def test_gradients_reach_every_parameter():
    model = tiny(in_chans=1, num_classes=3).train()
    x = torch.randn(2, 1, 64, 64)
    target = torch.randint(0, 3, (2, 64, 64))
    torch.nn.functional.cross_entropy(model(x), target).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_gradient_checkpointing_gives_the_same_gradients():
    plain = tiny(in_chans=1).train()
    ckpt = tiny(in_chans=1, grad_checkpoint=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 64, 64)
    plain(x).square().mean().backward()
    ckpt(x).square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_set_input_size_gives_the_network_built_for_that_size():
    model = tiny(img_size=64, window_size=2)
    ref = tiny(img_size=(64, 128), window_size=2)
    ref.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, 64, 128)
    model.set_input_size((64, 128))
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    assert model.img_size == (64, 128)


@pytest.mark.parametrize("kwargs,words", [
    (dict(img_size=225), ["multiples of", "32", "224"]),
    (dict(img_size=256, window_size=7), ["window_size 7", "does not divide", "window_size=8"]),
    (dict(img_size=(224, 200)), ["multiples of", "32"]),
    (dict(depths=(2, 2, 2), num_heads=(3, 6, 12, 24)), ["same length"]),
    (dict(embed_dim=96, num_heads=(5, 6, 12, 24)), ["num_heads[0]"]),
    (dict(attention="flash"), ["attention must be one of"]),
])
def test_invalid_configurations_raise_value_error_naming_the_constraint(kwargs, words):
    with pytest.raises(ValueError) as info:
        SwinUnet(**{"img_size": 224, "window_size": 7, **kwargs})
    for word in words:
        assert word in str(info.value)


def test_wrong_input_channels_or_incompatible_size_raise():
    model = tiny(in_chans=1)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="set for 64x64"):
        model(torch.randn(1, 1, 70, 64))
    with pytest.raises(ValueError, match="multiples of"):
        model.set_input_size((70, 64))
    big = tiny(img_size=128, window_size=4, num_heads=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="needs windows"):
        big.set_input_size(64)  # stage 3 (2x2) would shrink the window: tables differ


@pytest.mark.parametrize("training", [False, True])
def test_residual_stream_keeps_its_precision_under_autocast(training):
    """x + linear(h) of a float32 stream is float32 under autocast (the straightforward add
    promotes); the fused residual GEMM must not turn the stream into bf16 block after block."""
    from swin_unet.model.attention import SwinBlock
    torch.manual_seed(0)
    block = SwinBlock(24, 2, 4, 0, drop_path=0.0).train(training)
    x = torch.randn(2, 64, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert out.dtype == torch.float32
    with torch.no_grad():
        exact = block(x)
    assert (out.float() - exact).abs().max() < 0.05 * exact.abs().max()


class _RecordSDPA(torch.overrides.TorchFunctionMode):
    """Records the arguments of every scaled_dot_product_attention call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            self.calls.append((args[:3], kwargs.get("attn_mask")))
        return func(*args, **kwargs)


def _blocks(model):
    return [b for stage in list(model.layers) + list(model.layers_up)[1:] for b in stage.blocks]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("amp", [False, True])
def test_every_block_hands_sdpa_4d_inputs_and_an_aligned_bias_of_the_compute_dtype(training, amp):
    """What the fused CUDA kernels need (flash, memory-efficient, cuDNN): 4-D q/k/v with a
    stride-1 last dimension, and a 4-D additive mask of q's dtype whose last dimension has
    stride 1 and whose other strides are multiples of 16 (else the memory-efficient kernel pads
    a copy per call), broadcastable to (B * nW, heads, N, N)."""
    model = tiny(img_size=64, window_size=4, num_heads=(1, 2, 2, 4), in_chans=1,
                 attention="sdpa").train(training)
    x = torch.randn(3, 1, 64, 64)
    recorder = _RecordSDPA()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp)
    with recorder, autocast, torch.set_grad_enabled(training):
        model(x)
    blocks = _blocks(model)
    assert len(recorder.calls) == len(blocks) == 14
    shifted = 0
    for ((q, k, v), mask), block in zip(recorder.calls, blocks):
        n = block.window ** 2
        assert q.dtype == (torch.bfloat16 if amp else torch.float32)
        for t in (q, k, v):
            assert t.ndim == 4 and t.stride(-1) == 1
            assert t.shape == (q.shape[0], block.attn.num_heads, n, t.shape[-1])
        assert mask is not None and mask.ndim == 4 and mask.dtype == q.dtype
        assert mask.stride(-1) == 1
        assert all(s % 16 == 0 for s, size in zip(mask.stride()[:-1], mask.shape) if size > 1)
        assert mask.shape[1:] == (block.attn.num_heads, n, n)
        assert mask.shape[0] == (q.shape[0] if block.shift else 1)
        shifted += bool(block.shift)
    assert shifted == 4  # stages at 16x16 and 8x8 shift, in the encoder and the decoder


def test_sdpa_equals_explicit_attention_with_gradients_in_training():
    torch.manual_seed(0)
    model = tiny(img_size=64, window_size=4, num_heads=(1, 2, 2, 4), in_chans=1).train()
    x = torch.randn(3, 1, 64, 64)
    target = torch.randn(3, 9, 64, 64)
    outputs, grads = {}, {}
    for mode in ("explicit", "sdpa"):
        model.attention = mode
        model.zero_grad()
        out = model(x)
        (out * target).sum().backward()
        outputs[mode] = out.detach()
        grads[mode] = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert (outputs["explicit"] - outputs["sdpa"]).abs().max() < 1e-5
    for name, grad in grads["explicit"].items():
        assert (grad - grads["sdpa"][name]).abs().max() <= 1e-5 * (1 + grad.abs().max()), name
