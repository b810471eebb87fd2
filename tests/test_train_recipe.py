"""The training recipe: the published loss, learning-rate scaling and schedules, optimisers."""

import math

import pytest
import torch
import torch.nn.functional as F

from swin_unet import SwinUnet
from swin_unet.config import TrainConfig
from swin_unet.errors import InputError
from swin_unet.training import SegmentationLoss, build_optimizer, build_scheduler, scaled_lr
from swin_unet.config.checks import check_train_config
from swin_unet.training.recipe import lr_factor


def published_loss(logits, target, num_classes, ce_weight=0.4, dice_weight=0.6, smooth=1e-5):
    """The published loss written out: 0.4 CE + 0.6 soft Dice over all classes, batch-wise."""
    ce = F.cross_entropy(logits, target[:, 0])
    prob = torch.softmax(logits, dim=1)
    dice_terms = []
    for k in range(num_classes):
        p = prob[:, k]
        g = (target[:, 0] == k).float()
        intersect = (p * g).sum()
        denominator = (p * p).sum() + (g * g).sum()
        dice_terms.append(1.0 - (2 * intersect + smooth) / (denominator + smooth))
    dice = sum(dice_terms) / num_classes
    return ce_weight * ce + dice_weight * dice, ce, dice


@pytest.mark.parametrize("empty_class", [False, True])
def test_monai_loss_equals_the_published_formula(empty_class):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 16, 12, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 5, (3, 1, 16, 12))
    if empty_class:
        target[target == 3] = 0  # a class absent from the whole batch
    total, ce, dice = SegmentationLoss(0.4, 0.6)(logits, target)
    ref_total, ref_ce, ref_dice = published_loss(logits.float(), target, 5)
    assert total.item() == pytest.approx(ref_total.item(), abs=1e-6)
    assert ce.item() == pytest.approx(ref_ce.item(), abs=1e-6)
    assert dice.item() == pytest.approx(ref_dice.item(), abs=1e-6)
    # Same gradient too: the loss is what the original code optimises, not just its value.
    grad, = torch.autograd.grad(total, logits)
    logits_ref = logits.detach().float().requires_grad_(True)
    ref_grad, = torch.autograd.grad(published_loss(logits_ref, target, 5)[0], logits_ref)
    torch.testing.assert_close(grad.float(), ref_grad, atol=1e-7, rtol=1e-4)


def test_loss_is_batch_wise_not_per_image():
    """Dice over the whole batch differs from the mean of per-image Dice when images differ."""
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.zeros(2, 1, 8, 8, dtype=torch.int64)
    target[0, 0, :4] = 1  # class 1 only in image 0, class 2 only in image 1
    target[1, 0, 4:] = 2
    loss = SegmentationLoss(0.0, 1.0)
    batch = loss(logits, target)[0].item()
    per_image = sum(loss(logits[i:i + 1], target[i:i + 1])[0].item() for i in range(2)) / 2
    assert batch == pytest.approx(published_loss(logits, target, 3, 0.0, 1.0)[0].item(), abs=1e-6)
    assert abs(batch - per_image) > 1e-3


def test_loss_of_a_confident_correct_prediction_is_near_zero():
    target = torch.randint(0, 4, (2, 1, 8, 8))
    logits = F.one_hot(target[:, 0], 4).permute(0, 3, 1, 2).float() * 30.0
    total, ce, dice = SegmentationLoss()(logits, target)
    assert total.item() < 1e-4 and ce.item() < 1e-4 and dice.item() < 1e-4


def test_lr_scales_linearly_with_the_global_batch():
    train = TrainConfig(base_lr=0.05, base_batch_size=24)
    assert scaled_lr(train, 24) == pytest.approx(0.05)
    assert scaled_lr(train, 12) == pytest.approx(0.025)
    assert scaled_lr(train, 96) == pytest.approx(0.2)


def _tiny_model():
    return SwinUnet(img_size=32, in_chans=1, num_classes=3, embed_dim=8, depths=(1, 1, 1, 1),
                    num_heads=(1, 1, 1, 1), window_size=1)


def _original_poly_lrs(base_lr, max_iter, power=0.9):
    """The rates of the original trainer's loop, replayed: it runs a step, then sets the lr
    from the count before that step (``iter_num``), then counts the step."""
    lr, lrs = base_lr, []
    for iter_num in range(max_iter):
        lrs.append(lr)  # the rate this step runs at
        lr = base_lr * (1.0 - iter_num / max_iter) ** power
    return lrs


def _run_steps(optimizer, scheduler, n):
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_poly_schedule_gives_the_original_trainers_rate_at_every_step():
    train = TrainConfig(epochs=3, base_lr=0.05, batch_size=24, schedule="poly", poly_power=0.9)
    model = _tiny_model()
    optimizer = build_optimizer(model, train, global_batch_size=24)
    scheduler = build_scheduler(optimizer, train, iters_per_epoch=10)
    lrs = _run_steps(optimizer, scheduler, 30)
    assert lrs == pytest.approx(_original_poly_lrs(0.05, 30), rel=1e-12)
    # The closed form: steps 0 and 1 at the base rate, step k >= 1 at base (1 - (k-1)/30)^0.9.
    assert lrs[0] == lrs[1] == 0.05
    assert lrs[2] == pytest.approx(0.05 * (1 - 1 / 30) ** 0.9, rel=1e-12)
    assert lrs[29] == pytest.approx(0.05 * (1 - 28 / 30) ** 0.9, rel=1e-12)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["momentum"] == 0.9
    assert optimizer.param_groups[0]["weight_decay"] == 1e-4


def test_poly_schedule_continues_exactly_across_a_resume():
    train = TrainConfig(epochs=4, base_lr=0.05, batch_size=24, schedule="poly", poly_power=0.9)
    model = _tiny_model()
    optimizer = build_optimizer(model, train, global_batch_size=24)
    scheduler = build_scheduler(optimizer, train, iters_per_epoch=7)
    before = _run_steps(optimizer, scheduler, 15)  # stopped inside epoch 3
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    resumed_model = _tiny_model()
    resumed_opt = build_optimizer(resumed_model, train, global_batch_size=24)
    resumed_sched = build_scheduler(resumed_opt, train, iters_per_epoch=7)
    resumed_opt.load_state_dict(state["optimizer"])
    resumed_sched.load_state_dict(state["scheduler"])
    after = _run_steps(resumed_opt, resumed_sched, 13)
    assert before + after == pytest.approx(_original_poly_lrs(0.05, 28), rel=1e-12)
    assert after[0] == pytest.approx(0.05 * (1 - 14 / 28) ** 0.9, rel=1e-12)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    train = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=2)
    factor = lr_factor(train, iters_per_epoch=5)
    warm = [factor(k) for k in range(10)]
    assert warm == pytest.approx([(k + 1) / 10 for k in range(10)])
    assert factor(10) == pytest.approx(1.0)
    assert factor(30) == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / 40)))
    assert factor(49) < 0.01
    assert all(a >= b for a, b in zip([factor(k) for k in range(10, 50)],
                                      [factor(k) for k in range(11, 50)]))


def test_adamw_skips_weight_decay_on_norms_biases_and_position_tables():
    train = TrainConfig(optimizer="adamw", base_lr=1e-3, weight_decay=0.05)
    model = _tiny_model()
    optimizer = build_optimizer(model, train, global_batch_size=24)
    assert isinstance(optimizer, torch.optim.AdamW)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert any(n.endswith("relative_position_bias_table") for n in no_decay_names)
    assert any("norm" in n for n in no_decay_names)
    assert all(p.ndim >= 2 for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("key, value, words", [
    ("optimizer", "adam", "train.optimizer"),
    ("schedule", "step", "train.schedule"),
    ("amp_dtype", "fp8", "train.amp_dtype"),
    ("epochs", 0, "train.epochs"),
    ("batch_size", 0, "train.batch_size"),
    ("base_lr", -1.0, "train.base_lr"),
    ("val_every", 0, "train.val_every"),
])
def test_bad_train_values_name_the_key(key, value, words):
    train = TrainConfig(**{key: value})
    with pytest.raises(InputError, match=words.replace(".", r"\.")):
        check_train_config(train)


def test_cosine_warmup_longer_than_the_run_is_cut_short():
    train = TrainConfig(epochs=1, schedule="cosine", warmup_epochs=3)
    check_train_config(train)  # a 1-epoch trial of a warm-up config is allowed
    factor = lr_factor(train, iters_per_epoch=5)
    values = [factor(k) for k in range(5)]
    assert values == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
