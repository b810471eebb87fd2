"""train.py's user errors: one line naming the key or file, exit status 2, no traceback."""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import train as train_cli
from datasets import generate_phantom

REPO = Path(__file__).resolve().parent.parent
TINY = ["model.img_size=32", "model.embed_dim=8", "model.depths=[1,1,1,1]",
        "model.num_heads=[1,1,1,1]", "model.window_size=2", "train.epochs=1",
        "train.batch_size=8", "train.val_every=1", "data.num_workers=0", "data.augment=true",
        "train.schedule=poly", "train.warmup_epochs=0", "train.cpu_threads=1"]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate_phantom(tmp_path_factory.mktemp("data") / "phantom", "abdomen",
                            n_cases=3, shape=(32, 32, 4))


def run_main(capsys, *args):
    code = train_cli.main(["--quiet", "--device", "cpu", *args])
    err = capsys.readouterr().err.strip()
    return code, err


def tiny(phantom, output, *overrides):
    args = ["--dataset", "phantom", "--root", str(phantom), "--output", str(output)]
    for item in TINY + list(overrides):
        args += ["--set", item]
    return args


def assert_one_line_error(code, err, *words):
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize("override, words", [
    ("model.depth=[2,2,2,2]", ["model.depth"]),
    ("train.epoch=3", ["train.epoch"]),
    ("nonsense.key=1", ["nonsense.key"]),
    ("train.epochs=abc", ["train.epochs", "integer"]),
    ("train.optimizer=adam", ["train.optimizer", "sgd"]),
    ("model.img_size=50", ["model.img_size", "50"]),
    ("train.batch_size=0", ["train.batch_size"]),
    ("model.window_size=0", ["model.window_size", "positive"]),
    ("model.depths=[]", ["model.depths"]),
    ("model.num_heads=[3,3,3,3]", ["num_heads"]),
    ("model.drop_path_rate=1.5", ["model.drop_path_rate"]),
    ("model.mlp_ratio=0", ["model.mlp_ratio"]),
    ("inference.metric_mode=voxel", ["inference.metric_mode", "paper"]),
])
def test_bad_set_keys_and_values_exit_2_naming_the_key(capsys, phantom, tmp_path, override,
                                                       words):
    code, err = run_main(capsys, *tiny(phantom, tmp_path, override))
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "checkpoints").exists()


def test_nan_in_a_validation_image_exits_2_before_training(capsys, phantom, tmp_path):
    """Found by the integrity check, not at the first validation train.val_every epochs later."""
    root = tmp_path / "data"
    shutil.copytree(phantom, root)
    path = root / "RawData" / "Training" / "img" / "img0002.nii.gz"  # the validation case
    image = nib.load(str(path))
    hu = np.asarray(image.dataobj).astype(np.float32)
    hu[3, 3, 1] = np.nan
    nib.save(nib.Nifti1Image(hu, image.affine), str(path))
    code, err = run_main(capsys, *tiny(root, tmp_path / "out", "train.epochs=2",
                                       "train.val_every=2"))
    assert_one_line_error(code, err, str(path), "NaN")
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_unreadable_config_file_exits_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    code, err = run_main(capsys, "--dataset", "phantom", "--config", str(bad),
                         "--output", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(bad))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_exits_2(capsys, phantom, tmp_path):
    code = train_cli.main(["--quiet", *tiny(phantom, tmp_path), "--device", "cuda"])
    err = capsys.readouterr().err.strip()
    assert_one_line_error(code, err, "--device cuda")


def test_resume_without_a_checkpoint_exits_2(capsys, phantom, tmp_path):
    code, err = run_main(capsys, *tiny(phantom, tmp_path), "--resume")
    assert_one_line_error(code, err, "last.pth", "not found")


def test_resume_with_another_model_shape_exits_2(capsys, phantom, tmp_path):
    assert run_main(capsys, *tiny(phantom, tmp_path))[0] == 0
    code, err = run_main(capsys, *tiny(phantom, tmp_path, "model.embed_dim=16",
                                       "train.epochs=2"), "--resume")
    assert_one_line_error(code, err, "last.pth", "shape")
    # A checkpoint of another data set is refused before anything is built.
    code, err = run_main(capsys, "--dataset", "acdc", "--output", str(tmp_path), "--resume")
    assert_one_line_error(code, err, "phantom")


def test_the_real_entry_point_prints_one_line_and_no_traceback(phantom, tmp_path):
    result = subprocess.run([sys.executable, "train.py", *tiny(phantom, tmp_path),
                             "--set", "model.window=7"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown config key 'model.window' (did you mean 'model.window_size'?)"]


@pytest.mark.parametrize("override, suggestion", [
    ("train.epoch=3", "train.epochs"), ("epochs=3", "train.epochs"),
    ("trian.epochs=3", "train.epochs"), ("data.rooot=x", "data.root"),
    ("train.batchsize=4", "train.batch_size"),
])
def test_unknown_keys_suggest_the_nearest_known_key(capsys, tmp_path, override, suggestion):
    code, err = run_main(capsys, "--dataset", "phantom", "--output", str(tmp_path),
                         "--set", override)
    key = override.split("=")[0]
    assert_one_line_error(code, err, f"unknown config key '{key}' (did you mean '{suggestion}'?)")
    code, err = run_main(capsys, "--dataset", "phantom", "--output", str(tmp_path),
                         "--set", "train.zzz=1")
    assert_one_line_error(code, err, "train.zzz", "known keys under 'train'", "train.epochs")


def test_missing_root_is_one_line_then_the_layout_help_with_its_lines(capsys, tmp_path):
    code = train_cli.main(["--quiet", "--dataset", "synapse", "--root", str(tmp_path / "none"),
                           "--output", str(tmp_path / "run")])
    lines = capsys.readouterr().err.rstrip().splitlines()
    assert code == 2
    assert lines[0] == f"error: {tmp_path / 'none'}: Synapse data not found"
    assert len(lines) > 4 and all(line.startswith("  ") or not line for line in lines[1:])
    assert any(line.strip().startswith("raw BTCV data:") and "img0001.nii.gz" in line
               for line in lines)
    assert any("synapse.org" in line for line in lines)


def test_a_failed_run_logs_its_error_in_train_log(capsys, phantom, tmp_path):
    code, err = run_main(capsys, *tiny(phantom, tmp_path, "data.train_cases=[case0042]"))
    assert_one_line_error(code, err, "img0042.nii.gz: file not found")
    log = (tmp_path / "train.log").read_text().splitlines()
    assert any(line.startswith("20") and "run " in line for line in log)  # it had started
    assert log[-1].endswith(f"ERROR {err}")


def test_resume_of_a_finished_run_says_so_and_touches_nothing(capsys, phantom, tmp_path):
    assert run_main(capsys, *tiny(phantom, tmp_path))[0] == 0
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*")}
    code = train_cli.main(["--quiet", "--device", "cpu", *tiny(phantom, tmp_path), "--resume"])
    out = capsys.readouterr().out
    assert code == 0
    assert "all 1 epochs of this run are done already; nothing to do" in out
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*")} == before


def test_printed_next_command_runs_from_where_the_user_stands(capsys, phantom, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = train_cli.main(["--quiet", "--device", "cpu", "--dataset", "phantom", "--root",
                           str(phantom), "--output", "runs/tiny",
                           *[a for item in TINY for a in ("--set", item)]])
    out = capsys.readouterr().out
    assert code == 0
    evaluate = next(line for line in out.splitlines() if "evaluate:" in line).split()
    script = evaluate[evaluate.index("python") + 1]
    assert (tmp_path / script).resolve() == REPO / "test.py"
    checkpoint = Path(evaluate[evaluate.index("--checkpoint") + 1])
    assert not checkpoint.is_absolute() and (tmp_path / checkpoint).is_file()


def test_default_data_folders_are_relative_to_the_current_folder():
    from datasets import default_root
    assert default_root("phantom") == Path("data") / "phantom"
    assert default_root("synapse") == Path("data") / "Synapse"


def test_every_command_line_option_has_help_text():
    import test as test_cli
    from swin_unet.explain import __main__ as explain_cli

    parsers = [test_cli.build_parser()]
    for module in (train_cli, explain_cli):
        captured = []
        original = argparse.ArgumentParser.parse_args

        def capture(self, *args, **kwargs):
            captured.append(self)
            raise SystemExit(0)

        argparse.ArgumentParser.parse_args = capture
        try:
            with pytest.raises(SystemExit):
                module.parse_args([])
        finally:
            argparse.ArgumentParser.parse_args = original
        parsers += captured
    assert len(parsers) == 3
    for parser in parsers:
        undocumented = [a.option_strings for a in parser._actions if not a.help]
        assert undocumented == [], parser.prog
