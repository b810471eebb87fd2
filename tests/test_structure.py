"""The project's structure: the data-set table, choices checked once, errors with their path."""

import subprocess
import sys
from pathlib import Path

import pytest

import train as train_cli
from datasets import DATASET_NAMES, DATASETS, LAYOUTS, open_dataset
from swin_unet.config import (Config, DataConfig, MetricMode, apply_overrides, choices,
                              look_up_option)
from swin_unet.config.checks import check_config
from swin_unet.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def test_the_table_gives_the_names_layouts_and_the_cli_choices(capsys):
    assert DATASET_NAMES == tuple(DATASETS)
    assert DATASET_NAMES[:4] == ("synapse", "acdc", "phantom", "folder")
    assert LAYOUTS["synapse"] == ("auto", "synapse_raw", "synapse_npz")
    assert LAYOUTS["phantom"] == ("auto", "synapse_raw", "acdc_raw", "abdomen", "cardiac")
    assert DATASETS["acdc"].class_names() == ["RV", "Myo", "LV"]
    assert DATASETS["phantom"].class_names("cardiac") == ["RV", "Myo", "LV"]
    assert DATASETS["phantom"].default_intensity() == "ct"
    assert DATASETS["folder"].default_intensity() is None
    with pytest.raises(SystemExit) as info:
        train_cli.parse_args(["--dataset", "brats"])
    assert info.value.code == 2
    assert ", ".join(DATASET_NAMES) in capsys.readouterr().err.replace("'", "")


def test_a_missing_root_names_it_and_the_help(tmp_path):
    with pytest.raises(InputError) as info:
        open_dataset("acdc", DataConfig(root=str(tmp_path / "none")))
    assert str(info.value).startswith(f"{tmp_path / 'none'}: ACDC data not found")


def test_choices_are_checked_once_where_the_config_is_read():
    assert choices(MetricMode) == ("mm", "paper")
    assert look_up_option("paper", choices(MetricMode), "metric mode") == "paper"
    with pytest.raises(InputError, match="config key 'train.schedule' must be one of poly, "
                                         "cosine, got 'step'") as info:
        apply_overrides(Config(), ["train.schedule=step"])
    assert info.value.key == "train.schedule"
    config = Config()
    config.model.window_size = 5  # built in code: check_config sees it through check_sizes
    with pytest.raises(InputError, match="config key 'model.img_size': window_size 5") as info:
        check_config(config)
    assert info.value.key == "model.img_size"


def test_errors_carry_the_path_as_an_attribute(tmp_path):
    error = InputError("label: values out of range", key="label")
    located = error.at(tmp_path / "a.nii.gz")
    assert located.path == tmp_path / "a.nii.gz" and located.key == "label"
    assert str(located) == f"{tmp_path / 'a.nii.gz'}: label: values out of range"
    assert located.at(tmp_path / "b.nii.gz") is located  # named once, by the innermost


def _project_datasets_error(site: Path, cwd: Path) -> str:
    """The InputError ``project_datasets()`` raises in a fresh Python with ``site`` first on the
    path, as "path | message"."""
    code = ("from swin_unet.data_layer import project_datasets\n"
            "from swin_unet.errors import InputError\n"
            "try:\n    project_datasets()\n"
            "except InputError as exc:\n    print(exc.path, '|', exc)\n")
    env = {"PYTHONPATH": f"{site}:{REPO}", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_another_datasets_package_first_on_the_path_keeps_the_name(tmp_path):
    """Hugging Face's ``datasets`` before the clone on sys.path (imported first or not): the
    project's data sets load as ``swin_unet_datasets`` and ``import datasets`` stays theirs."""
    fake = tmp_path / "site" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("load_dataset = 'theirs'  # like Hugging Face's\n")
    for first in ("import datasets\n", ""):
        code = (first + "from swin_unet.data_layer import project_datasets\n"
                "ours = project_datasets()\n"
                "import datasets\n"
                "print(ours.__name__, ours.open_dataset.__module__, datasets.load_dataset,\n"
                "      'phantom' in ours.DATASET_NAMES)\n")
        env = {"PYTHONPATH": f"{fake.parent}:{REPO}", "OMP_WAIT_POLICY": "PASSIVE"}
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["swin_unet_datasets", "swin_unet_datasets.registry",
                                       "theirs", "True"]


def test_a_missing_requirement_of_the_data_layer_is_named_not_blamed_on_the_path(tmp_path):
    blocker = tmp_path / "site" / "sitecustomize.py"
    blocker.parent.mkdir()
    # h5py made unimportable, as on a machine where the requirements were not installed.
    blocker.write_text("import sys\nsys.modules['h5py'] = None\n")
    message = _project_datasets_error(blocker.parent, REPO)
    assert "needs the package 'h5py'" in message and "requirements.txt" in message
    assert "PYTHONPATH" not in message


def test_metric_mode_sets_the_resize_method_and_the_metric_conventions_together():
    from swin_unet.config import config_from_dict, metric_mode_settings
    assert metric_mode_settings("paper") == {"resize": "paper", "metric_conventions": "paper"}
    assert metric_mode_settings("mm") == {"resize": "bicubic", "metric_conventions": "mm"}
    # A config written before the two settings were separate (old checkpoints, old YAML).
    legacy = config_from_dict({"inference": {"metric_mode": "paper", "batch_size": 4}})
    assert (legacy.inference.resize, legacy.inference.metric_conventions) == ("paper", "paper")
    assert legacy.inference.batch_size == 4
    both = apply_overrides(Config(), ["inference.metric_mode=paper"])
    assert (both.inference.resize, both.inference.metric_conventions) == ("paper", "paper")
    one = apply_overrides(Config(), ["inference.resize=paper"])
    assert (one.inference.resize, one.inference.metric_conventions) == ("paper", "mm")
    with pytest.raises(InputError, match="inference.metric_conventions"):
        apply_overrides(Config(), ["inference.metric_conventions=voxel"])


def test_the_conventions_text_speaks_the_distance_unit_of_the_run():
    from swin_unet.config.conventions import describe_conventions
    from swin_unet.report.tables import conventions_line
    assert describe_conventions("mm", "px").startswith("HD95 in px;")
    assert "mm" not in describe_conventions("mm", "px")
    assert describe_conventions("mm").startswith("HD95 in mm from the voxel spacing")
    assert "voxels (spacing ignored)" in describe_conventions("paper", "voxel")
    line = conventions_line({"metric_mode": "mm", "hd95_unit": "px"})
    assert line.startswith("metric conventions 'mm': HD95 in px")
