"""On a CUDA GPU (marker ``cuda``, skipped elsewhere): fused attention, mixed precision, test.py.

Run by benchmarks/gpu_suite.sh; ``python -m pytest -m cuda tests/test_cuda.py`` alone.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import generate_phantom
from swin_unet import SwinUnet
from swin_unet.training.distributed import configure_math, math_settings, restore_math_settings
from swin_unet.training.recipe import SegmentationLoss

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]

DEFAULT = dict(img_size=224, in_chans=1, num_classes=9)


@pytest.fixture
def exact_float32():
    """TF32 off for comparisons at float32 resolution; the previous settings after."""
    settings = math_settings()
    configure_math(torch.device("cuda"), deterministic=False)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    restore_math_settings(settings)


def _batch(batch: int, size: int = 224, classes: int = 9):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, size, size, generator=generator).cuda()
    y = torch.randint(0, classes, (batch, 1, size, size), generator=generator).cuda()
    return x, y


def test_sdpa_equals_explicit_attention_on_the_gpu(exact_float32):
    torch.manual_seed(0)
    model = SwinUnet(**DEFAULT, drop_path_rate=0.0).cuda().train()
    x, y = _batch(2)
    results = {}
    for mode in ("explicit", "sdpa"):
        model.attention = mode
        model.zero_grad()
        out = model(x)
        out.float().square().mean().backward()
        results[mode] = (out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    (out_e, grads_e), (out_s, grads_s) = results["explicit"], results["sdpa"]
    assert (out_e - out_s).abs().max() < 1e-4
    for name, grad in grads_e.items():
        assert (grad - grads_s[name]).abs().max() <= 1e-4 * (1 + grad.abs().max()), name


def test_fused_sdpa_kernels_take_every_block_under_bf16_autocast():
    """Only the flash, memory-efficient and cuDNN back ends allowed: the math kernel (which
    upcasts bf16 to fp32) is not a fallback, so a block whose inputs no fused kernel accepts
    fails here instead of silently running slowly."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    torch.manual_seed(0)
    model = SwinUnet(**DEFAULT, attention="sdpa").cuda().train()
    x, y = _batch(4)
    fused = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
             SDPBackend.CUDNN_ATTENTION]
    with sdpa_kernel(fused), torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(x)
        loss, _, _ = SegmentationLoss()(logits, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_training_steps_have_a_finite_loss(dtype):
    torch.manual_seed(0)
    model = SwinUnet(**DEFAULT).cuda().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    loss_fn = SegmentationLoss()
    x, y = _batch(4)
    losses = []
    for _ in range(3):
        with torch.autocast("cuda", dtype=dtype):
            loss, _, _ = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss))
    assert all(np.isfinite(losses)), losses


def test_deterministic_training_steps_repeat_exactly():
    """train.deterministic on the GPU: no operation of a step lacks a deterministic kernel
    (it would raise), and two runs from the same seed give the same weights bit for bit."""
    settings = math_settings()
    configure_math(torch.device("cuda"), deterministic=True)
    try:
        weights = []
        for _ in range(2):
            torch.manual_seed(0)
            model = SwinUnet(**DEFAULT).cuda().train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x, y = _batch(2)
            for _ in range(2):
                loss, _, _ = SegmentationLoss()(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            weights.append({k: v.clone() for k, v in model.state_dict().items()})
    finally:
        restore_math_settings(settings)
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


def _run(*args):
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_test_py_on_the_gpu_gives_the_cpu_labels_on_the_phantom(tmp_path):
    """A model trained on the phantom (on the GPU, a few epochs), scored with test.py on the
    CPU and on the GPU: the same labels (float32 both; cuDNN's TF32 convolutions may move a
    logit by ~1e-3, so a voxel at an exact tie could differ: at most 1 in 10^4)."""
    root = generate_phantom(tmp_path / "phantom", "abdomen", n_cases=6, shape=(64, 64, 12))
    run = tmp_path / "run"
    _run("train.py", "--dataset", "phantom", "--root", str(root), "--output", str(run),
         "--device", "cuda", "--quiet", "--set", "model.img_size=64", "--set",
         "model.window_size=2", "--set", "train.epochs=6", "--set", "train.val_every=6")
    checkpoint = run / "checkpoints" / "last.pth"
    labels = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"test_{device}"
        _run("test.py", "--volume", "--dataset", "phantom", "--root", str(root),
             "--checkpoint", str(checkpoint), "--output", str(out), "--save-nifti",
             "--device", device, "--no-progress")
        import nibabel as nib
        labels[device] = {p.name: np.asarray(nib.load(str(p)).dataobj)
                          for p in sorted((out / "predictions").glob("*.nii.gz"))}
    assert labels["cpu"].keys() == labels["cuda"].keys() and labels["cpu"]
    for name, cpu in labels["cpu"].items():
        same = np.mean(cpu == labels["cuda"][name])
        assert same >= 0.9999, (name, same)
