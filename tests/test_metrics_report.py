"""metrics.csv, summary.json and the printed table written from real metric rows."""

import csv
import json
import math

import numpy as np

from swin_unet.evaluation.metrics import case_metrics, summarize
from swin_unet.report.tables import format_table, write_metrics_csv, write_summary_json

NAMES = ["aorta", "gallbladder", "kidney_left"]


def _per_case():
    label = np.zeros((12, 10, 4), np.uint8)
    label[2:6, 2:6, 1:3] = 1
    label[7:10, 6:9, :] = 2
    pred = label.copy()
    pred[2:4, 2:6, 1:3] = 0          # aorta: half found
    pred[pred == 2] = 0              # gallbladder: missed; kidney_left: absent from both
    return {"case0001": case_metrics(pred, label, 4, spacing=(1.0, 1.0, 2.5)),
            "case0002": case_metrics(label, label, 4, spacing=(1.0, 1.0, 2.5))}


def test_metrics_csv_has_the_contract_columns_and_one_row_per_case_and_class(tmp_path):
    per_case = _per_case()
    write_metrics_csv(tmp_path / "metrics.csv", per_case, NAMES)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["case", "class_index", "class_name", "dice", "hd95"]
    assert len(rows) == 6
    first = rows[0]
    assert (first["case"], first["class_index"], first["class_name"]) == ("case0001", "1", "aorta")
    assert float(first["dice"]) == per_case["case0001"][0]["dice"]  # full precision
    missed = rows[1]
    assert float(missed["dice"]) == 0.0 and float(missed["hd95"]) > 0.0
    assert rows[2]["dice"] == "nan" and rows[2]["class_name"] == "kidney_left"


def test_summary_json_is_valid_json_with_null_for_uncounted(tmp_path):
    summary = summarize(_per_case(), NAMES, "mm")
    write_summary_json(tmp_path / "summary.json", summary, checkpoint="x.pth")
    text = (tmp_path / "summary.json").read_text()

    def reject(constant):
        raise AssertionError(f"summary.json holds {constant}, which is not JSON")

    document = json.loads(text, parse_constant=reject)
    for key in ("metric_mode", "n_cases", "mean_dice", "mean_hd95", "classes"):
        assert key in document
    assert document["checkpoint"] == "x.pth" and "conventions" in document
    assert document["classes"]["kidney_left"]["dice"] is None
    assert document["classes_not_counted"] == ["kidney_left"]
    aorta = document["classes"]["aorta"]
    assert math.isclose(aorta["dice"], (2 * 16 / 48 + 1.0) / 2)
    assert math.isclose(document["mean_dice"], (aorta["dice"] + 0.5 * (0 + 1)) / 2)


def test_printed_table_names_organs_like_the_papers():
    summary = summarize(_per_case(), NAMES, "mm")
    table = format_table(summary)
    lines = table.splitlines()
    assert "Aorta" in lines[1] and "Gallbladder" in lines[1] and "Kidney(L)" in lines[1]
    assert lines[1].split()[0] == "DSC"
    assert lines[2].split()[0] == f"{100 * summary['mean_dice']:.2f}"
    assert "HD95 (mm)" in table and "not counted" in table
