"""test.py's visual report: report.html, figures/ and the viewer colour tables of a phantom run."""

import contextlib
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from swin_unet.report.figures import display_plan, display_slice
from swin_unet.palette import PALETTE
from swin_unet.report.builder import ReportBuilder
from test_test_cli import CLI, SYNAPSE, run_cli, workspace  # noqa: F401  (a module fixture)

PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The parts of report.html a reader relies on: images, and each table's cells by id."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.tables = [], {}
        self._table, self._row, self._cell = None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"value": attrs.get("data-value"), "text": ""}
            self._row.append(self._cell)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "table":
            self._table = None


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG, path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def same_number(cell, value, scale=1.0):
    """The cell holds ``value`` exactly (data-value) and shows it rounded to 2 decimals."""
    if value is None:
        return cell["value"] == "" and cell["text"].strip() == "-"
    return (float(cell["value"]) == pytest.approx(value, rel=1e-12, abs=1e-12)
            and cell["text"].strip() == f"{scale * value:.2f}")


def read_slicer_table(path: Path) -> dict[int, tuple[str, tuple[int, ...]]]:
    rows = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        index, name, *rgba = line.split()
        assert len(rgba) == 4 and all(0 <= int(v) <= 255 for v in rgba), line
        rows[int(index)] = (name, tuple(int(v) for v in rgba))
    return rows


def read_itksnap_labels(path: Path) -> dict[int, tuple[str, tuple[int, ...], float]]:
    pattern = re.compile(r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([01])\s+([01])'
                         r'\s+"(.*)"$')
    rows = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        match = pattern.match(line)
        assert match, line
        index, r, g, b, alpha, _, _, name = match.groups()
        rows[int(index)] = (name, (int(r), int(g), int(b)), float(alpha))
    return rows


@pytest.fixture(scope="module")
def run(workspace, tmp_path_factory):  # noqa: F811
    """A phantom run with a tiny model, predictions and a publication figure of 2 slices."""
    out = tmp_path_factory.mktemp("report") / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = CLI.main([str(a) for a in [
            "--volume", "--dataset", "phantom", "--root", workspace / "phantom",
            "--checkpoint", workspace / "tiny.pth", "--output", out, "--save-nifti",
            "--no-progress", "--figure-cases", "case0003", "--figure-slices", "1,4"]])
    assert code == 0
    return out, stdout.getvalue()


def test_report_and_figures_exist_and_the_run_ends_with_the_report_path(run):
    out, stdout = run
    assert stdout.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    page = Page((out / "report.html").read_text())
    assert page.images, "the page shows no figure"
    for src in page.images:  # relative references that resolve from the page's folder
        assert not Path(src).is_absolute() and (out / src).is_file(), src
        png_size(out / src)
    assert {"figures/case0003.png", "figures/boxplots.png",
            "figures/paper_case0003.png"} <= set(page.images)
    # The publication figure: 2 rows (slices 1 and 4) of 3 panels at 300 dpi.
    width, height = png_size(out / "figures" / "paper_case0003.png")
    assert width == round(3 * 1.8 * 300) and height > width * 2 / 3 * 0.9


def test_html_tables_hold_the_numbers_of_summary_json(run):
    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    tables = Page((out / "report.html").read_text()).tables
    header, values = tables["paper-table"]
    assert [c["text"] for c in header[2:]] == ["aorta", "gallbladder", "kidney_left",
                                               "kidney_right", "liver", "pancreas", "spleen",
                                               "stomach"]
    assert same_number(values[0], summary["mean_dice"], 100)
    assert same_number(values[1], summary["mean_hd95"])
    for cell, name in zip(values[2:], SYNAPSE):
        assert same_number(cell, summary["classes"][name]["dice"], 100)
    rows = tables["class-table"][1:]
    assert len(rows) == len(SYNAPSE)
    for row, name in zip(rows, SYNAPSE):
        stats = summary["classes"][name]
        assert same_number(row[1], stats["dice"], 100) and same_number(row[2], stats["hd95"])
        assert [int(c["text"]) for c in row[3:]] == [
            stats["n_counted"], stats["n_missed"], stats["n_false_positive"], stats["n_absent"]]
    cases = tables["case-table"][1:]
    assert [r[0]["text"] for r in cases] == list(summary["cases"])  # one test case: case0003
    for row in cases:
        scores = summary["cases"][row[0]["text"]]
        for cell, name in zip(row[3:], SYNAPSE):
            assert same_number(cell, scores[name]["dice"], 100)


def test_colour_tables_beside_the_predictions_name_and_colour_every_class(run):
    out, _ = run
    folder = out / "predictions"
    assert (folder / "case0003.nii.gz").is_file()
    slicer = read_slicer_table(folder / "labels.ctbl")
    snap = read_itksnap_labels(folder / "labels_itksnap.txt")
    assert sorted(slicer) == sorted(snap) == list(range(len(SYNAPSE) + 1))
    assert snap[0] == ("Clear Label", (0, 0, 0), 0.0)
    for index, name in enumerate(SYNAPSE, start=1):
        assert slicer[index][0] == name and snap[index][0] == name
        assert slicer[index][1] == (*PALETTE[index - 1], 255)  # the report's colours
        assert snap[index][1] == tuple(PALETTE[index - 1]) and snap[index][2] == 1.0
    assert len({slicer[i][1] for i in range(1, len(SYNAPSE) + 1)}) == len(SYNAPSE)
    for table in ("labels.ctbl", "labels_itksnap.txt"):  # the numbering is said
        assert "# values: class indices in the data set's class order" in \
            (folder / table).read_text()


def test_no_report_writes_neither_page_nor_figures(workspace, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "quiet"
    code, stdout, _ = run_cli(["--volume", "--dataset", "phantom", "--root",
                               workspace / "phantom", "--checkpoint", workspace / "tiny.pth",
                               "--output", out, "--no-progress", "--no-report"], capsys)
    assert code == 0 and (out / "summary.json").is_file()
    assert not (out / "report.html").exists() and not (out / "figures").exists()
    assert "report:" not in stdout


def test_input_run_reports_predicted_volumes_in_ml(workspace, tmp_path, capsys):  # noqa: F811
    scan = workspace / "phantom" / "RawData" / "Training" / "img" / "img0001.nii.gz"
    out = tmp_path / "seg"
    code, stdout, _ = run_cli(["--checkpoint", workspace / "tiny.pth", "--input", scan,
                               "--output", out, "--no-progress"], capsys)
    assert code == 0 and f"report: {out / 'report.html'}" in stdout
    prediction = nib.load(str(out / "predictions" / "img0001.nii.gz"))
    labels = np.asarray(prediction.dataobj)
    voxel_ml = float(np.prod(prediction.header.get_zooms()[:3])) / 1000.0
    page = Page((out / "report.html").read_text())
    header, row = page.tables["volume-table"]
    assert [c["text"] for c in header[1:]] == [f"{n} (ml)" for n in SYNAPSE]
    assert row[0]["text"] == "img0001"
    for index, cell in enumerate(row[1:], start=1):
        expected = np.count_nonzero(labels == index) * voxel_ml
        assert float(cell["value"]) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert "figures/img0001.png" in page.images and (out / "figures" / "img0001.png").is_file()
    assert (out / "predictions" / "labels.ctbl").is_file()


def test_a_one_slice_image_gets_a_figure_and_areas_in_pixels(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((24, 20, 1)).astype(np.float32)
    prediction = np.zeros((24, 20, 1), dtype=np.uint8)
    prediction[2:6, 3:8, 0], prediction[10:20, 5:9, 0] = 1, 2
    builder = ReportBuilder(tmp_path, ["disc", "cup"], {"input": "fundus.png"})
    builder.add_case("fundus", prediction, image=image, affine=np.eye(4), spacing=(1, 1, 1))
    page = Page(builder.write().read_text())
    header, row = page.tables["volume-table"]
    assert [c["text"] for c in header[1:]] == ["disc (px)", "cup (px)"]
    assert [float(c["value"]) for c in row[1:]] == [20.0, 40.0]
    assert png_size(tmp_path / "figures" / "fundus.png")[0] > 0


def test_slices_are_shown_the_radiological_way():
    """Patient's right on the viewer's left, anterior on top; no geometry: as stored."""
    volume = np.zeros((5, 4, 1))
    volume[0, 0, 0] = 1  # voxel (i=0, j=0)
    # i towards the patient's left, j posterior (the usual CT header): (0, 0) is right-anterior.
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    shown = display_slice(volume, 0, display_plan(lps))
    assert shown.shape == (4, 5) and shown[0, 0] == 1
    # RAS+ voxel axes: (0, 0) is the patient's left-posterior: bottom right.
    shown = display_slice(volume, 0, display_plan(np.diag([0.8, 0.8, 2.0, 1.0])))
    assert shown[-1, -1] == 1
    assert display_slice(volume, 0, display_plan(np.eye(4)))[0, 0] == 1  # as stored
    assert display_slice(volume, 0, display_plan(np.eye(4))).shape == (5, 4)


def test_scoring_existing_files_draws_labels_without_an_image(tmp_path, capsys):
    label = np.zeros((12, 10, 4), dtype=np.uint8)
    label[2:6, 2:6, 1:3], label[7:10, 5:9, 2:4] = 1, 2
    prediction = label.copy()
    prediction[2:4, 2:6, 1] = 0
    for folder, array in (("preds", prediction), ("labels", label)):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(array, np.diag([0.7, 0.7, 3.0, 1.0])),
                 str(tmp_path / folder / "c1.nii.gz"))
    out = tmp_path / "eval"
    code, stdout, _ = run_cli(["--volume", "--predictions", tmp_path / "preds", "--labels",
                               tmp_path / "labels", "--output", out, "--no-progress"], capsys)
    assert code == 0 and f"report: {out / 'report.html'}" in stdout
    page = Page((out / "report.html").read_text())
    assert "figures/c1.png" in page.images and all((out / s).is_file() for s in page.images)
    # Classes named from the labels' values, in the legend and the tables.
    assert [c["text"] for c in page.tables["class-table"][1]][0].strip() == "class_1"
