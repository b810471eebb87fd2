"""Reports that fit their input: 2-D grids in colour, nothing clipped, units, names, warnings."""

import base64
import io
import json
import logging

import numpy as np
import pytest
from PIL import Image

from swin_unet.config import Config
from swin_unet.palette import PALETTE
from swin_unet.report.builder import ReportBuilder
from swin_unet.report.figures import MIN_WIDTH, montage_figure
from swin_unet.report.html import MAX_GRID, run_title
from swin_unet.report.tables import write_summary_json
from swin_unet.report.viewer import MAX_SLICES, render_strips
from swin_unet.report.warnings import collect_warnings
from test_report_html import Page

# ---------------------------------------------------------------- CIEDE2000, written here


def _lab(rgb):
    c = np.asarray(rgb, float) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])  # D65 white
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], -1)


def _ciede2000(lab1, lab2):
    (l1, a1, b1), (l2, a2, b2) = np.moveaxis(lab1, -1, 0), np.moveaxis(lab2, -1, 0)
    cbar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(cbar ** 7 / (cbar ** 7 + 25 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p, h2p = np.degrees(np.arctan2(b1, a1p)) % 360, np.degrees(np.arctan2(b2, a2p)) % 360
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0, dh)
    dhp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    lbar, cbarp, hsum = (l1 + l2) / 2, (c1p + c2p) / 2, h1p + h2p
    hbar = np.where(np.abs(h1p - h2p) > 180,
                    np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2), hsum / 2)
    hbar = np.where(c1p * c2p == 0, hsum, hbar)
    t = (1 - 0.17 * np.cos(np.radians(hbar - 30)) + 0.24 * np.cos(np.radians(2 * hbar))
         + 0.32 * np.cos(np.radians(3 * hbar + 6)) - 0.20 * np.cos(np.radians(4 * hbar - 63)))
    rc = 2 * np.sqrt(cbarp ** 7 / (cbarp ** 7 + 25 ** 7))
    rt = -np.sin(np.radians(60 * np.exp(-((hbar - 275) / 25) ** 2))) * rc
    sl = 1 + 0.015 * (lbar - 50) ** 2 / np.sqrt(20 + (lbar - 50) ** 2)
    sc, sh = 1 + 0.045 * cbarp, 1 + 0.015 * cbarp * t
    dl, dc = (l2 - l1) / sl, (c2p - c1p) / sc
    return np.sqrt(dl ** 2 + dc ** 2 + (dhp / sh) ** 2 + rt * dc * (dhp / sh))


@pytest.mark.parametrize("lab1,lab2,expected", [  # Sharma, Wu and Dalal's test data
    ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
    ((50, 3.1571, -77.2803), (50, 0, -82.7485), 2.8615),
    ((50, 0, 0), (50, -1, 2), 2.3669),
    ((50, 2.49, -0.001), (50, -2.49, 0.0009), 7.1792),
    ((50, 2.5, 0), (50, 3.2972, 0), 1.0),
    ((50, 2.5, 0), (73, 25, -18), 27.1492),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
])
def test_the_colour_difference_matches_published_values(lab1, lab2, expected):
    assert _ciede2000(np.array(lab1, float), np.array(lab2, float)) == pytest.approx(
        expected, abs=1e-4)


def test_any_two_of_the_first_16_class_colours_differ_clearly():
    assert len(PALETTE) >= 16
    lab = _lab(PALETTE[:16])
    distance = _ciede2000(lab[:, None], lab[None])
    np.fill_diagonal(distance, np.inf)
    assert distance.min() >= 20, np.unravel_index(distance.argmin(), distance.shape)


# ---------------------------------------------------------------- layouts


def _texts_inside(fig) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # places the legend
    renderer = canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    texts = list(fig.texts) + [t for ax in fig.axes for t in ax.texts]
    texts += [t for legend in fig.legends for t in legend.get_texts()]
    assert texts
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (
            text.get_text(), box, width, height)


def test_a_2d_figure_puts_the_panels_side_by_side_in_colour_with_nothing_clipped():
    names = [f"a_structure_with_a_long_name_{i}" for i in range(1, 9)]
    rgb = np.zeros((3, 40, 30, 1), np.float32)
    rgb[0], rgb[2, 20:] = 1.0, 0.5  # red, purple below
    label = np.zeros((40, 30, 1), np.uint8)
    label[:, :, 0] = np.arange(40)[:, None] % 9
    fig = montage_figure("lesion_0174: mean Dice 68.65 %", label, names, image=rgb,
                         label=label)
    _texts_inside(fig)
    assert fig.bbox.width >= MIN_WIDTH and fig.bbox.width > fig.bbox.height
    assert len(fig.legends[0].get_texts()) == 8  # every class present, wrapped
    ax = fig.axes[0]
    mosaic = ax.images[0].get_array()
    assert mosaic.shape[:2] == (160, 3 * 120 + 2 * 4)  # three panels in a row, grown
    panel = mosaic[:, :120]
    assert panel[..., 0].mean() > 0.9 and panel[..., 1].mean() < 0.1  # drawn in colour


def test_a_volume_figure_lists_every_class_present_without_clipping():
    names = ["aorta", "gallbladder", "kidney_left", "kidney_right", "liver", "pancreas",
             "spleen", "stomach"]
    label = np.zeros((30, 30, 6), np.uint8)
    for k in range(1, 9):
        label[3 * k:3 * k + 2, 5:25, k % 6] = k
    fig = montage_figure("case0001: mean Dice 80.00 %", label, names, label=label,
                         image=np.random.default_rng(0).random((30, 30, 6)))
    _texts_inside(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == names


def _two_d_builder(tmp_path, n):
    builder = ReportBuilder(tmp_path, ["lesion"], {"data set": "phantom2d",
                                                   "checkpoint": "runs/x/best.pth"})
    rng = np.random.default_rng(1)
    for i in range(n):
        label = np.zeros((24, 32, 1), np.uint8)
        label[4:18, 6:20] = 1
        prediction = np.roll(label, i % 7, axis=1)
        builder.add_case(f"lesion_{i:04d}", prediction, rng.random((3, 24, 32, 1)), label,
                         np.eye(4), (1, 1, 1), [{"dice": 1.0 - i / 100.0}])
    return builder


def test_a_2d_run_lays_out_a_grid_worst_first_and_links_the_rest(tmp_path):
    n = MAX_GRID + 6
    builder = _two_d_builder(tmp_path, n)
    cases = {f"lesion_{i:04d}": {"lesion": {"dice": 1.0 - i / 100.0, "hd95": float(i)}}
             for i in range(n)}
    summary = {"metric_mode": "mm", "hd95_unit": "px", "n_cases": n, "mean_dice": 0.8,
               "mean_hd95": 3.0, "classes": {"lesion": {"dice": 0.8, "hd95": 3.0,
                                                        "n_counted": n}}, "cases": cases}
    text = builder.write(summary).read_text(encoding="utf-8")
    grid = text[text.index('id="grid"'):text.index('id="more-figures"')]
    shown = [c.split('"')[0] for c in grid.split('id="case-')[1:]]
    assert shown == [f"lesion_{i:04d}" for i in range(n - 1, n - 1 - MAX_GRID, -1)]
    more = text[text.index('id="more-figures"'):]
    assert all(f"figures/lesion_{i:04d}.png" in more for i in range(6))
    assert "Images, worst first (24 of 30)" in text and "HD95 in px" in text
    assert 'class="viewer"' not in text  # single images need no slice viewer
    assert "segmented with best.pth" in text and "organ" not in text.lower()


def test_sizes_are_mm2_for_a_slice_with_spacing_ml_for_volumes_and_px_without(tmp_path):
    builder = ReportBuilder(tmp_path, ["liver", "stomach"], {"input": "scans/"})
    slice_ = np.zeros((20, 20, 1), np.uint8)
    slice_[:10, :10] = 1
    builder.add_case("dicom_slice", slice_, affine=np.diag([0.66, 0.66, 5.0, 1.0]),
                     spacing=(0.66, 0.66, 5.0))
    volume = np.zeros((10, 10, 4), np.uint8)
    volume[:5, :4, :] = 2
    builder.add_case("ct", volume, affine=np.diag([2.0, 2.0, 2.5, 1.0]),
                     spacing=(2.0, 2.0, 2.5))
    builder.add_case("photo", slice_, affine=np.eye(4), spacing=(1, 1, 1))
    header, *rows = Page(builder.write().read_text(encoding="utf-8")).tables["volume-table"]
    assert [c["text"] for c in header[1:]] == ["liver", "stomach"]  # units per cell
    cells = {row[0]["text"]: [c["text"] for c in row[1:]] for row in rows}
    assert cells["dicom_slice"] == [f"{100 * 0.66 * 0.66:.2f} mm²", "0.00 mm²"]
    assert cells["ct"] == ["0.00 ml", f"{80 * 10 / 1000:.2f} ml"]
    assert cells["photo"] == ["100 px", "0 px"]


def test_what_the_run_warned_is_on_the_page_and_in_summary_json(tmp_path):
    with collect_warnings() as warned:
        logging.getLogger("swin_unet.evaluation.scan_outputs").warning(
            "brain (b.nii.gz): in-plane spacing 0.5 mm is far from the training data's 0.8")
        logging.getLogger("datasets.images").warning("masks: 2 mask(s) match no image")
        logging.getLogger("other.library").warning("not ours")
        builder = ReportBuilder(tmp_path, ["liver"], {"input": "b.nii.gz",
                                                      "checkpoint": "ct/best.pth"})
        builder.add_case("brain", np.zeros((8, 8, 3), np.uint8), spacing=(1, 1, 1))
        page = builder.write().read_text(encoding="utf-8")
        write_summary_json(tmp_path / "summary.json", {"metric_mode": "mm"})
    assert len(warned) == 2
    box = page[page.index('id="warnings"'):page.index("<h2>Run</h2>")]
    assert "in-plane spacing 0.5 mm" in box and "2 mask(s)" in box and "not ours" not in box
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["warnings"] == warned
    assert "<title>b.nii.gz segmented with best.pth</title>" in page


def test_the_title_names_what_was_segmented_and_the_model():
    assert run_title({"data set": "synapse", "split": "test",
                      "checkpoint": "runs/s/checkpoints/best.pth"}) == (
        "synapse (test split) segmented with best.pth")
    assert run_title({"predictions": "p/", "labels": "l/"}) == "p/ scored against l/"


def test_a_ct_model_given_values_that_are_not_hounsfield_units_warns(caplog):
    from swin_unet.evaluation.scan_outputs import check_intensities
    from swin_unet.io.volumes import Volume

    config = Config()
    config.data.intensity = "ct"
    rng = np.random.default_rng(0)
    mri = Volume("brain", rng.uniform(0, 255, (16, 16, 4)).astype(np.float32), (1, 1, 1),
                 np.eye(4), "brain.nii.gz", None)
    ct = Volume("ct", rng.uniform(-1000, 400, (16, 16, 4)).astype(np.float32), (1, 1, 1),
                np.eye(4), "ct.nii.gz", None)
    assert check_intensities(ct, config) == []
    with caplog.at_level(logging.WARNING):
        (warning,) = check_intensities(mri, config)
    assert "Hounsfield" in warning and "data.intensity ct" in warning and "brain" in caplog.text
    config.data.intensity = "zscore"
    assert check_intensities(mri, config) == []


def test_the_viewer_strips_hold_the_slices_and_labels(tmp_path):
    depth = MAX_SLICES + 36
    prediction = np.zeros((40, 30, depth), np.uint8)
    prediction[..., :] = (np.arange(depth) % 4)[None, None, :]
    image = np.random.default_rng(0).random((40, 30, depth)).astype(np.float32)
    data = render_strips(tmp_path, "case0001", prediction, image, prediction,
                         affine=None, spacing=(1.0, 2.0, 1.0))
    assert len(data["slices"]) == MAX_SLICES and data["slices"][0] == 0
    assert data["slices"][-1] == depth - 1 and data["aspect"] == 0.5
    strip = Image.open(tmp_path / "case0001_slices.jpg")
    assert strip.size == (30, 40 * MAX_SLICES)
    uri = data["layers"]["prediction"]
    labels = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert labels.shape == (40 * MAX_SLICES, 30)
    for n, z in enumerate(data["slices"]):
        assert (labels[40 * n:40 * (n + 1)] == z % 4).all()
    assert render_strips(tmp_path, "one", prediction[..., :1], image[..., :1]) is None
