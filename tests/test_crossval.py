"""Cross-validation: folds, train.py --fold, ensembles, test.py --cross-validation and --compare."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import wilcoxon

import train as train_cli
from datasets import make_folds, open_dataset, read_splits_final, resolve_fold, write_splits_final
from datasets.phantom_folder import write_phantom_folder
from swin_unet.config import DataConfig, load_config
from swin_unet.errors import InputError
from swin_unet.evaluation.compare import MEAN, paired_rows
from command_lines import TEST_PY as TEST_CLI

K = 2  # folds of the tiny runs
TINY = ["model.img_size=32", "model.embed_dim=8", "model.depths=[1,1,1,1]",
        "model.num_heads=[1,1,1,1]", "model.window_size=2", "train.epochs=1",
        "train.batch_size=8", "train.val_every=1", "data.num_workers=0", "data.augment=false",
        "train.cpu_threads=1", f"data.folds={K}"]
N_CASES = 7  # 6 non-test cases (the folder layout's deterministic split holds one out)


def train(capsys, root, output, *args):
    argv = ["--quiet", "--device", "cpu", "--dataset", "folder", "--root", str(root),
            "--output", str(output)]
    for item in TINY:
        argv += ["--set", item]
    code = train_cli.main(argv + list(args))  # the test's own --set after TINY's
    return code, capsys.readouterr().err.strip()


def score(capsys, *args):
    code = TEST_CLI.main(["--volume", "--device", "cpu", "--no-progress", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()[-1:]


@pytest.fixture(scope="module")
def folds_run(tmp_path_factory):
    """Two one-epoch folds of a 7-case folder phantom (32 x 32 x 4)."""
    base = tmp_path_factory.mktemp("cv")
    root = write_phantom_folder(base / "data", N_CASES, shape=(32, 32, 4))
    runs = base / "runs" / "configA"
    for k in range(K):
        argv = ["--quiet", "--device", "cpu", "--dataset", "folder", "--root", str(root),
                "--fold", str(k), "--output", str(runs / f"fold_{k}")]
        for item in TINY:
            argv += ["--set", item]
        assert train_cli.main(argv) == 0
    return base, root, runs


@pytest.mark.parametrize("n_folds", [2, 3, 4, 5])
@pytest.mark.parametrize("n_cases", [5, 8, 13, 30])
def test_folds_partition_the_cases(n_folds, n_cases):
    cases = [f"c{i:02d}" for i in range(n_cases)]
    folds = make_folds(cases, n_folds, seed=3)
    assert len(folds) == n_folds
    vals = [case for f in folds for case in f["val"]]
    assert sorted(vals) == cases  # every case validates exactly once
    for fold in folds:
        assert sorted(fold["train"] + fold["val"]) == cases
        assert not set(fold["train"]) & set(fold["val"])
    sizes = [len(f["val"]) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert make_folds(list(reversed(cases)), n_folds, seed=3) == folds  # order-free
    if n_cases >= 8:
        assert make_folds(cases, n_folds, seed=4) != folds


def test_fewer_cases_than_folds_is_an_error():
    with pytest.raises(InputError, match=r"data\.folds.*5 folds need at least 5.*there are 3"):
        make_folds(["a", "b", "c"], 5)
    with pytest.raises(InputError, match="at least 2 folds"):
        make_folds(["a", "b", "c"], 1)


def test_splits_final_round_trip_and_used_as_the_folds(tmp_path):
    root = write_phantom_folder(tmp_path / "data", 6, shape=(16, 16, 4))
    source = open_dataset("folder", DataConfig(root=str(root)))
    pool = source.cases("train") + source.cases("val")
    folds = make_folds(pool, 2, seed=0)
    path = write_splits_final(tmp_path / "splits_final.json", folds)
    assert read_splits_final(path) == folds
    assert json.loads(path.read_text()) == folds  # nnU-Net's format: a list of train/val
    # In the data folder, nnU-Net's folds replace made ones (and all cases are non-test).
    shutil.copy(path, root / "splits_final.json")
    source = open_dataset("folder", DataConfig(root=str(root)))
    split, every = resolve_fold(source, "1", 5, 0, source.splits_final)
    assert every == folds and split["val"] == folds[1]["val"]
    assert split["train"] == folds[1]["train"]
    with pytest.raises(InputError, match="fold number 0..1"):
        resolve_fold(source, "2", 5, 0, source.splits_final)
    bad = [{"train": folds[0]["train"], "val": folds[0]["val"]},
           {"train": [], "val": folds[0]["val"][:1]}]
    (root / "splits_final.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match="validation case of folds 0 and 1"):
        resolve_fold(source, "0", 5, 0, source.splits_final)


def test_fold_run_records_its_cases_and_every_fold(folds_run):
    base, root, runs = folds_run
    source = open_dataset("folder", DataConfig(root=str(root)))
    test = source.cases("test")
    pool = [c for c in source.cases("train") + source.cases("val")]
    expected = make_folds(pool, K, seed=load_config(runs / "fold_0" / "config.yaml").train.seed)
    for k in range(K):
        config = load_config(runs / f"fold_{k}" / "config.yaml")
        assert config.data.fold == str(k) and config.data.folds == K
        assert config.data.val_cases == expected[k]["val"]
        assert config.data.train_cases == expected[k]["train"]
        assert config.data.test_cases == test
        assert read_splits_final(runs / f"fold_{k}" / "splits_final.json") == expected


def test_fold_all_and_too_few_cases(capsys, folds_run, tmp_path):
    _, root, _ = folds_run
    source = open_dataset("folder", DataConfig(root=str(root)))
    split, every = resolve_fold(source, "all", K, 0)
    assert split["val"] == [] and len(split["train"]) == N_CASES - 1 and len(every) == K
    assert not set(split["train"]) & set(split["test"])
    code, err = train(capsys, root, tmp_path / "many", "--fold", "0", "--set", "data.folds=9")
    assert code == 2 and len(err.splitlines()) == 1 and "data.folds" in err and "9 folds" in err
    code, err = train(capsys, root, tmp_path / "k", "--fold", "2")
    assert code == 2 and "--fold: '2' is not a fold number 0..1" in err


def test_resumed_fold_keeps_its_split(capsys, folds_run, tmp_path):
    base, root, runs = folds_run
    data = tmp_path / "data"
    shutil.copytree(root, data)
    run = tmp_path / "fold_1"
    shutil.copytree(runs / "fold_1", run)
    before = load_config(run / "config.yaml").data
    # New cases in the data folder would make other folds; the resumed run keeps its own.
    extra = write_phantom_folder(tmp_path / "more", 12, seed=5, shape=(32, 32, 4))
    for sub in ("imagesTr", "labelsTr"):
        for path in sorted((extra / sub).glob("*"))[7:]:
            shutil.copy(path, data / sub / path.name.replace("abdomen_", "extra_"))
    assert train(capsys, data, run, "--resume", "--set", "train.epochs=2",
                 "--set", "train.val_every=5")[0] == 0
    after = load_config(run / "config.yaml").data
    assert (after.train_cases, after.val_cases, after.fold) == (
        before.train_cases, before.val_cases, "1")
    code, err = train(capsys, data, run, "--resume", "--fold", "0")
    assert code == 2 and "a run of fold 1" in err


def _probabilities(folder):
    return {p.name: np.load(p)["probabilities"].astype(np.float64)
            for p in sorted((folder / "probabilities").glob("*.npz"))}


def test_ensemble_is_the_mean_of_its_members_probabilities(capsys, folds_run, tmp_path):
    base, root, runs = folds_run
    a, b = (runs / f"fold_{k}" / "checkpoints" / "best.pth" for k in (0, 1))
    common = ["--dataset", "folder", "--root", str(root), "--save-probabilities", "--no-report"]
    for name, checkpoints in (("a", [a]), ("b", [b]), ("ab", [a, b])):
        code, out, err = score(capsys, *common, "--checkpoint", *map(str, checkpoints),
                               "--output", str(tmp_path / name))
        assert code == 0, err
    pa, pb, pab = (_probabilities(tmp_path / n) for n in ("a", "b", "ab"))
    assert pab and set(pab) == set(pa)
    for case in pab:
        assert np.abs(pa[case] - pb[case]).max() > 0.01  # two different networks
        np.testing.assert_allclose(pab[case], (pa[case] + pb[case]) / 2, atol=2e-3)
    summary = json.loads((tmp_path / "ab" / "summary.json").read_text())
    assert summary["checkpoints"] == [str(a), str(b)]


def test_ensemble_refuses_checkpoints_that_disagree(capsys, folds_run, tmp_path):
    base, root, runs = folds_run
    a = runs / "fold_0" / "checkpoints" / "last.pth"
    checkpoint = torch.load(a, weights_only=False)
    checkpoint["config"]["data"]["ct_window"] = [-100.0, 200.0]
    b = tmp_path / "other.pth"
    torch.save(checkpoint, b)
    code, out, err = score(capsys, "--dataset", "folder", "--root", str(root), "--no-report",
                           "--checkpoint", str(a), str(b), "--output", str(tmp_path / "o"))
    assert code == 2 and str(b) in err[0] and "CT window" in err[0]


def test_cross_validation_scores_every_case_once(capsys, folds_run, tmp_path):
    base, root, runs = folds_run
    folds = [runs / f"fold_{k}" for k in range(K)]
    code, out, err = score(capsys, "--cross-validation", *map(str, folds),
                           "--output", str(tmp_path / "cv"))
    assert code == 0, err
    source = open_dataset("folder", DataConfig(root=str(root)))
    pool = sorted(source.cases("train") + source.cases("val"))
    summary = json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert summary["n_cases"] == len(pool) and sorted(summary["cases"]) == pool
    assert summary["complete"] is True
    vals = {c: str(k) for k in range(K)
            for c in load_config(folds[k] / "config.yaml").data.val_cases}
    assert summary["fold_of_case"] == vals
    with (tmp_path / "cv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({r["case"] for r in rows}) == pool
    assert len(rows) == len(pool) * 8  # each case once, one row per class
    assert (tmp_path / "cv" / "report.html").is_file()
    # Overlapping folds: one line naming both runs.
    copy = tmp_path / "configB" / "fold_0"
    shutil.copytree(folds[0], copy)
    code, out, err = score(capsys, "--cross-validation", str(folds[0]), str(copy),
                           "--output", str(tmp_path / "bad"))
    assert code == 2 and str(folds[0]) in err[0] and str(copy) in err[0]
    assert "--compare" in err[0]


def test_compare_prints_the_paired_table(capsys, folds_run, tmp_path):
    base, root, runs = folds_run
    other = tmp_path / "configB"
    shutil.copytree(runs, other)
    folds = [runs / f"fold_{k}" for k in range(K)] + [other / f"fold_{k}" for k in range(K)]
    code, out, err = score(capsys, "--cross-validation", *map(str, folds), "--compare",
                           "--no-report", "--output", str(tmp_path / "cmp"))
    assert code == 0, err
    assert "configA" in out and "configB" in out and "Wilcoxon" in out
    with (tmp_path / "cmp" / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["class_name"] == MEAN and len(rows) == 9
    # The same networks: every paired difference is 0, nothing to test.
    assert all(float(r["mean_difference"]) == 0 and r["wilcoxon_p"] == "" for r in rows)
    for name in ("configA", "configB"):
        assert json.loads((tmp_path / "cmp" / name / "summary.json").read_text())["n_cases"] == 6


def test_paired_rows_match_scipy():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 0.9, (12, 2))
    b = a + rng.normal(0.03, 0.02, (12, 2))
    b[3, 1] = np.nan  # not counted in one configuration: left out of that class's pairs

    def cases(values):
        return {f"c{i}": {"x": {"dice": v[0]}, "y": {"dice": v[1]}} for i, v in enumerate(values)}

    stats, per_case = paired_rows(cases(a), cases(b), ["x", "y"])
    by_class = {row["class_name"]: row for row in stats}
    assert by_class["x"]["n_cases"] == 12 and by_class["y"]["n_cases"] == 11
    assert by_class["x"]["wilcoxon_p"] == pytest.approx(wilcoxon(b[:, 0] - a[:, 0]).pvalue)
    keep = ~np.isnan(b[:, 1])
    assert by_class["y"]["mean_difference"] == pytest.approx(np.mean((b - a)[keep, 1]))
    assert by_class["y"]["wilcoxon_p"] == pytest.approx(wilcoxon((b - a)[keep, 1]).pvalue)
    assert by_class[MEAN]["n_cases"] == 12
    assert len(per_case) == 12 + 12 + 11
