"""The CPU a tile at a time (swin_unet/model/tiling.py) in inference: the same values as the
whole batch, used exactly where it should be; training runs whole."""

import pytest
import torch

from swin_unet import SwinUnet
from swin_unet.model import tiling
from swin_unet.model.layers import permute_tokens
from swin_unet.model.reference import ReferenceSwinUnet
from swin_unet.model.tiling import tile_windows

TINY = dict(embed_dim=12, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), drop_path_rate=0.0,
            in_chans=3, num_classes=4, attention="explicit")


@pytest.fixture
def calls(monkeypatch):
    """Tiles run by the blocks and the final expansion (counting wrappers)."""
    counts = {"blocks": 0, "head": 0}
    block, head = tiling.forward_tiled, tiling.expansion_logits_tiled

    def counted_block(*args):
        counts["blocks"] += 1
        return block(*args)

    def counted_head(*args):
        counts["head"] += 1
        return head(*args)

    import swin_unet.model.attention as attention
    import swin_unet.model.layers as layers
    monkeypatch.setattr(attention, "forward_tiled", counted_block)
    monkeypatch.setattr(layers, "expansion_logits_tiled", counted_head)
    return counts


def _whole(model, x):
    """The model's output with tiling off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiling, "BLOCK_TILE_MIN_BYTES", 2**62)
        patch.setattr(tiling, "HEAD_TILE_TOKENS", 2**62)
        with torch.no_grad():
            return model(x)


@pytest.mark.parametrize("kwargs,tile_tokens", [
    (dict(img_size=64, window_size=2), 12),         # 3 windows a tile, fewer than an image's
    (dict(img_size=64, window_size=2), 4 * 64 + 5),  # 64 windows: one image's a tile at stage 0
    (dict(img_size=(64, 128), window_size=2), 40),   # 10 windows: tiles of 8 (divisor of 128)
    (dict(img_size=96, window_size=3, num_heads=(3, 3, 3, 3)), 9 * 7),  # 7 windows of 16 -> 4
    (dict(img_size=64, window_size=2, depths=(1, 2, 3, 2)), 4 * 5),  # odd depths, other orders
])
def test_tiled_inference_equals_the_whole_batch_and_the_reference(monkeypatch, calls, kwargs,
                                                                   tile_tokens):
    torch.manual_seed(3)
    config = {**TINY, **kwargs}
    model = SwinUnet(**config).eval()
    reference = ReferenceSwinUnet(**{k: v for k, v in config.items() if k != "attention"}).eval()
    reference.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(3, 3, *model.img_size)
    whole = _whole(model, x)
    assert calls == {"blocks": 0, "head": 0}
    monkeypatch.setattr(tiling, "BLOCK_TILE_MIN_BYTES", 0)
    monkeypatch.setattr(tiling, "BLOCK_TILE_TOKENS", tile_tokens)
    monkeypatch.setattr(tiling, "HEAD_TILE_TOKENS", 7)  # tiles that split images unevenly
    with torch.no_grad():
        tiled = model(x)
        expected = reference(x)
    blocks = sum(config["depths"]) + sum(config["depths"][:-1])
    assert calls == {"blocks": blocks, "head": 1}
    assert (tiled - whole).abs().max() < 1e-5  # GEMMs of other heights may round otherwise
    assert (tiled - expected).abs().max() < 1e-5


def test_nothing_tiles_with_autograd_and_below_the_threshold_only_the_head_tiles(monkeypatch,
                                                                                  calls):
    torch.manual_seed(0)
    model = SwinUnet(img_size=64, window_size=2, **TINY)
    x = torch.randn(2, 3, 64, 64)
    monkeypatch.setattr(tiling, "BLOCK_TILE_MIN_BYTES", 0)
    monkeypatch.setattr(tiling, "HEAD_TILE_TOKENS", 7)
    model.eval()
    model(x).sum().backward()  # evaluation mode, but with autograd
    assert calls == {"blocks": 0, "head": 0}
    model.train()
    with torch.no_grad():
        model(x)
    # Blocks have dropout and drop-path in training; the final expansion has neither.
    assert calls == {"blocks": 0, "head": 1}
    calls["head"] = 0
    monkeypatch.setattr(tiling, "BLOCK_TILE_MIN_BYTES", 2 * 256 * 48 * 4 - 1)  # stage 0 only
    model.eval()
    with torch.no_grad():
        model(x)
    assert calls["blocks"] == 4 and calls["head"] == 1  # 2 encoder and 2 decoder blocks


def _unfolded_head(head, x, weight):
    b, length, c = x.shape
    sub = head.norm(head.expand(x).view(b, length * head.scale ** 2, c))
    return torch.nn.functional.linear(sub, weight)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_folded_head_equals_the_unfolded_head(monkeypatch, dtype, tolerance):
    from swin_unet.model.layers import FinalPatchExpand

    torch.manual_seed(0)
    head = FinalPatchExpand(8).to(dtype)
    with torch.no_grad():  # away from LayerNorm's initial gamma = 1, beta = 0
        head.norm.weight.uniform_(0.5, 1.5)
        head.norm.bias.uniform_(-0.5, 0.5)
    weight = torch.randn(3, 8, dtype=dtype)
    x = torch.randn(2, 25, 8, dtype=dtype)
    monkeypatch.setattr(tiling, "HEAD_TILE_TOKENS", 7)  # 50 tokens: tiles of 7 and a last of 1
    with torch.no_grad():
        expected, folded = _unfolded_head(head, x, weight), tiling.expansion_logits_tiled(
            head, x, weight)
    assert (expected - folded).abs().max() <= tolerance * expected.abs().max()


def test_training_runs_whole_and_trains_like_the_reference(monkeypatch, calls):
    torch.manual_seed(1)
    config = {**TINY, "img_size": 64, "window_size": 2}
    fast = SwinUnet(**config)
    reference = ReferenceSwinUnet(**{k: v for k, v in config.items() if k != "attention"})
    reference.load_state_dict(fast.state_dict(), strict=False)
    monkeypatch.setattr(tiling, "BLOCK_TILE_MIN_BYTES", 0)
    monkeypatch.setattr(tiling, "HEAD_TILE_TOKENS", 100)
    x, target = torch.randn(5, 3, 64, 64), torch.randint(0, 4, (5, 64, 64))
    for model in (fast, reference):
        torch.nn.functional.cross_entropy(model(x), target).backward()
    assert calls == {"blocks": 0, "head": 0}
    expected = dict(reference.named_parameters())
    for name, param in fast.named_parameters():
        ref_grad = expected[name].grad
        assert (param.grad - ref_grad).abs().max() <= 1e-4 * (1 + ref_grad.abs().max()), name
    with torch.no_grad():
        fast(x)  # without autograd the head tiles (blocks in training mode run whole)
    assert calls == {"blocks": 0, "head": 1}


@pytest.mark.parametrize("period,target,expected", [
    (64, 200, 192), (64, 64, 64), (64, 12, 8), (64, 17, 16), (16, 7, 4),
    (34, 16, 34),   # divisors 1, 2, 17: 2 is under half the target, so whole images
    (49, 10, 7), (49, 20, 49), (1, 5, 5), (7, 1, 1),
])
def test_tile_windows_lines_tiles_up_with_the_images_windows(period, target, expected):
    per_tile = tile_windows(period, target)
    assert per_tile == expected
    assert per_tile % period == 0 or period % per_tile == 0


def test_batched_token_gather_equals_index_select_with_gradients():
    x = torch.randn(3, 40, 5, requires_grad=True)
    perm = torch.randperm(40)
    inverse = torch.argsort(perm)
    grad = torch.randn(3, 40, 5)
    out = permute_tokens(x, perm, inverse)
    assert torch.equal(out, x.detach().index_select(1, perm))
    (out * grad).sum().backward()
    assert torch.equal(x.grad, grad.index_select(1, inverse))
    with torch.no_grad():
        assert torch.equal(permute_tokens(x[:, :, 1:], perm, inverse),
                           x[:, :, 1:].index_select(1, perm))  # not contiguous


def test_tiled_inference_runs_under_cpu_autocast_and_agrees_with_the_whole_batch(monkeypatch,
                                                                                  calls):
    torch.manual_seed(0)
    model = SwinUnet(img_size=64, window_size=2, **TINY).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        whole = _whole(model, x)
        monkeypatch.setattr(tiling, "BLOCK_TILE_MIN_BYTES", 0)
        monkeypatch.setattr(tiling, "BLOCK_TILE_TOKENS", 12)
        monkeypatch.setattr(tiling, "HEAD_TILE_TOKENS", 7)
        with torch.no_grad():
            tiled = model(x)
    assert calls == {"blocks": 14, "head": 1}
    assert tiled.dtype == whole.dtype and torch.isfinite(tiled).all()
    assert (tiled.float() - whole.float()).abs().max() < 0.05 * whole.abs().max()


def test_untiled_turns_the_tiled_paths_off_and_flop_counters_see_every_gemm(monkeypatch, calls):
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = SwinUnet(img_size=64, window_size=2, **TINY).eval()
    x = torch.randn(2, 3, 64, 64)
    monkeypatch.setattr(tiling, "BLOCK_TILE_MIN_BYTES", 0)
    monkeypatch.setattr(tiling, "HEAD_TILE_TOKENS", 7)

    def flops(grad: bool) -> int:
        counter = FlopCounterMode(display=False)
        with torch.set_grad_enabled(grad), tiling.untiled(), counter:
            model(x)
        return counter.get_total_flops()

    # Without autograd the residual GEMMs accumulate in place: still counted, same total.
    assert flops(grad=False) == flops(grad=True) > 0
    assert calls == {"blocks": 0, "head": 0}
    with torch.no_grad():
        model(x)  # untiled() has been left: tiles again
    assert calls == {"blocks": 14, "head": 1}
