"""Dice and HD95 against medpy, the empty-mask conventions of both modes, and the summary."""

import math

import numpy as np
import pytest
from medpy.metric import binary
from scipy import ndimage

from swin_unet.errors import InputError
from swin_unet.evaluation.metrics import (case_metrics, dice_score, hausdorff95, summarize, surface_mask,
                               volume_diagonal)

NUM_CLASSES = 5


def blob_labels(seed, shape=(40, 36, 14), num_classes=NUM_CLASSES):
    """Irregular multi-component label map: smoothed noise thresholded per class."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    for c in range(1, num_classes):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
        labels[field > np.quantile(field, 0.93)] = c
    return labels


def perturb(labels, seed):
    """A plausible prediction: the labels shifted by a voxel and with some voxels flipped."""
    rng = np.random.default_rng(seed)
    pred = np.roll(labels, shift=(1, -1, 0), axis=(0, 1, 2))
    noise = rng.random(labels.shape) < 0.01
    pred[noise] = rng.integers(0, NUM_CLASSES, size=int(noise.sum()))
    return pred


def paper_reference(pred, label, num_classes):
    """TransUNet's calculate_metric_percase per class, with medpy as the oracle."""
    out = []
    for c in range(1, num_classes):
        p, g = pred == c, label == c
        if p.sum() > 0 and g.sum() > 0:
            out.append((binary.dc(p, g), binary.hd95(p, g)))
        elif p.sum() > 0:
            out.append((1.0, 0.0))
        else:
            out.append((0.0, 0.0))
    return out


def with_empty_cases(label, pred):
    """Make class 1 missed, class 2 a false positive, class 3 absent from both."""
    label, pred = label.copy(), pred.copy()
    pred[pred == 1] = 0
    label[label == 2] = 0
    label[label == 3] = 0
    pred[pred == 3] = 0
    return label, pred


@pytest.mark.parametrize("shape", [(30, 25, 9), (33, 41)])
def test_surface_mask_equals_scipy_face_erosion(shape):
    mask = blob_labels(3, shape=shape, num_classes=2) > 0
    mask[0] = True  # an object touching the border: the outside counts as background
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    expected = mask ^ ndimage.binary_erosion(mask, structure=structure)
    np.testing.assert_array_equal(surface_mask(mask), expected)


def test_dice_and_hd95_equal_medpy_with_anisotropic_spacing():
    label = blob_labels(1) == 2
    pred = perturb(blob_labels(1), 2) == 2
    spacing = (0.7, 1.3, 4.0)
    assert dice_score(pred, label) == pytest.approx(binary.dc(pred, label), abs=1e-12)
    assert hausdorff95(pred, label, spacing) == pytest.approx(
        binary.hd95(pred, label, voxelspacing=spacing), rel=1e-9)
    assert hausdorff95(pred, label) == pytest.approx(binary.hd95(pred, label), rel=1e-9)


def test_hd95_with_masks_at_the_volume_border():
    label = np.zeros((20, 20, 6), bool)
    label[:8, :, :] = True          # touches three faces of the volume
    pred = np.zeros_like(label)
    pred[5:20, 12:20, 2:6] = True
    assert hausdorff95(pred, label, (1.0, 2.0, 3.0)) == pytest.approx(
        binary.hd95(pred, label, voxelspacing=(1.0, 2.0, 3.0)), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paper_mode_equals_published_procedure_in_every_empty_mask_case(seed):
    label, pred = with_empty_cases(blob_labels(seed), perturb(blob_labels(seed), seed + 10))
    rows = case_metrics(pred, label, NUM_CLASSES, spacing=(0.5, 0.5, 3.0), mode="paper")
    expected = paper_reference(pred, label, NUM_CLASSES)
    assert [r["status"] for r in rows] == ["missed", "false_positive", "absent", "both"]
    for row, (dice, hd) in zip(rows, expected):
        assert row["dice"] == pytest.approx(dice, abs=1e-4)
        assert row["hd95"] == pytest.approx(hd, rel=1e-3, abs=1e-9)
    # The paper's conventions: a false positive over an empty ground truth scores (1, 0).
    assert (rows[1]["dice"], rows[1]["hd95"]) == (1.0, 0.0)
    assert (rows[0]["dice"], rows[0]["hd95"]) == (0.0, 0.0)


def test_mm_mode_uses_spacing_and_never_rewards_empty_masks():
    label, pred = with_empty_cases(blob_labels(5), perturb(blob_labels(5), 6))
    spacing = (0.8, 0.6, 5.0)
    rows = case_metrics(pred, label, NUM_CLASSES, spacing=spacing, mode="mm")
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(label.shape, spacing)))
    assert volume_diagonal(label.shape, spacing) == pytest.approx(diagonal)
    missed, false_positive, absent, both = rows
    assert (missed["dice"], missed["hd95"]) == (0.0, pytest.approx(diagonal))
    assert missed["label_voxels"] == np.count_nonzero(label == 1) and missed["pred_voxels"] == 0
    assert (false_positive["dice"], false_positive["hd95"]) == (0.0, pytest.approx(diagonal))
    assert math.isnan(absent["dice"]) and math.isnan(absent["hd95"])
    p, g = pred == 4, label == 4
    assert both["dice"] == pytest.approx(binary.dc(p, g), abs=1e-12)
    assert both["hd95"] == pytest.approx(binary.hd95(p, g, voxelspacing=spacing), rel=1e-9)
    # A mm distance differs from the voxel one here: the spacing was really used.
    assert both["hd95"] != pytest.approx(binary.hd95(p, g), rel=1e-3)


def test_hd95_can_be_skipped_for_cheap_validation():
    label = blob_labels(7)
    rows = case_metrics(perturb(label, 8), label, NUM_CLASSES, hd95=False)
    assert all(r["hd95"] is None for r in rows)
    assert all(0.0 < r["dice"] < 1.0 for r in rows)


def test_float_labels_with_integer_values_are_accepted():
    label = blob_labels(9)
    rows_int = case_metrics(label, label, NUM_CLASSES)
    rows_float = case_metrics(label.astype(np.float32), label.astype(np.float64), NUM_CLASSES)
    assert rows_int == rows_float
    assert all(r["dice"] == 1.0 and r["hd95"] == 0.0 for r in rows_int)


@pytest.mark.parametrize("pred, label, message", [
    (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8), "shape"),
    (np.full((4, 4, 4), 5, np.uint8), np.zeros((4, 4, 4), np.uint8), "prediction"),
    (np.zeros((4, 4, 4)), np.full((4, 4, 4), 0.5), "non-integer"),
    (np.zeros((4, 4, 4), np.int16), np.full((4, 4, 4), -1, np.int16), "label"),
])
def test_bad_inputs_raise_input_error(pred, label, message):
    with pytest.raises(InputError, match=message):
        case_metrics(pred, label, NUM_CLASSES)


def test_bad_mode_and_spacing_raise():
    label = blob_labels(1)
    with pytest.raises(InputError, match="metric conventions"):
        case_metrics(label, label, NUM_CLASSES, mode="voxel")
    with pytest.raises(InputError, match="spacing"):
        case_metrics(label, label, NUM_CLASSES, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        hausdorff95(np.zeros((3, 3), bool), np.ones((3, 3), bool))


def _rows(status_dice_hd):
    keys = ("status", "dice", "hd95")
    return [dict(zip(keys, v), class_index=i) for i, v in enumerate(status_dice_hd, start=1)]


def test_summary_means_over_cases_then_classes_excluding_absent():
    nan = math.nan
    per_case = {
        "a": _rows([("both", 0.8, 4.0), ("both", 0.6, 10.0)]),
        "b": _rows([("both", 0.6, 2.0), ("absent", nan, nan)]),
        "c": _rows([("missed", 0.0, 50.0), ("absent", nan, nan)]),
    }
    summary = summarize(per_case, ["liver", "spleen"], "mm")
    liver, spleen = summary["classes"]["liver"], summary["classes"]["spleen"]
    assert liver["dice"] == pytest.approx((0.8 + 0.6 + 0.0) / 3)
    assert liver["hd95"] == pytest.approx((4 + 2 + 50) / 3)
    assert (spleen["dice"], spleen["hd95"], spleen["n_counted"]) == (0.6, 10.0, 1)
    assert spleen["n_absent"] == 2 and liver["n_missed"] == 1
    assert summary["mean_dice"] == pytest.approx((liver["dice"] + 0.6) / 2)
    assert summary["mean_hd95"] == pytest.approx((liver["hd95"] + 10.0) / 2)
    assert (summary["n_cases"], summary["n_absent"]) == (3, 2)
    assert summary["cases"]["c"]["liver"] == {"dice": 0.0, "hd95": 50.0, "status": "missed"}


def test_a_missed_organ_never_improves_the_mm_means_but_can_in_paper_mode():
    label = blob_labels(11)
    pred = perturb(label, 12)
    missed_pred = pred.copy()
    missed_pred[missed_pred == 2] = 0
    means = {}
    for mode in ("mm", "paper"):
        base = {"x": case_metrics(pred, label, NUM_CLASSES, mode=mode)}
        worse = {"x": case_metrics(missed_pred, label, NUM_CLASSES, mode=mode)}
        names = ["c1", "c2", "c3", "c4"]
        means[mode] = (summarize(base, names, mode), summarize(worse, names, mode))
    base, worse = means["mm"]
    assert worse["mean_dice"] < base["mean_dice"] and worse["mean_hd95"] > base["mean_hd95"]
    base, worse = means["paper"]
    assert worse["mean_hd95"] < base["mean_hd95"]  # the published convention's flaw


def test_summary_rejects_rows_that_do_not_match_the_class_names():
    rows = _rows([("both", 0.5, 1.0), ("both", 0.5, 1.0)])
    with pytest.raises(InputError, match="class index 2"):
        summarize({"a": rows}, ["only_one"], "mm")
    with pytest.raises(InputError, match="class 3"):
        summarize({"a": rows}, ["a", "b", "c"], "mm")


def test_summary_without_hd95_reports_none():
    rows = _rows([("both", 0.5, None)])
    summary = summarize({"a": rows}, ["x"], "paper")
    assert summary["mean_hd95"] is None and summary["classes"]["x"]["hd95"] is None
    assert summary["hd95_unit"] == "voxel"
