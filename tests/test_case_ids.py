"""Case ids are names, never paths: whatever a split lists, nothing outside the folders is touched."""

import json
import os
import sys
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from datasets import generate_phantom, open_dataset
from swin_unet.config import DataConfig
from swin_unet.errors import InputError
from swin_unet.evaluation.images import write_image_prediction
from swin_unet.evaluation.scan_outputs import OutputKinds, output_paths
from swin_unet.io.paths import check_case_id, inside, inside_output
from swin_unet.io.volumes import with_header, write_labels

# Where Python and its libraries read their own files (modules imported on first use).
LIBRARIES = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, "/usr", "/proc",
                                                 "/sys", "/dev", str(Path(__file__).parents[1]))})
HOSTILE = ["../../x/victim", "/etc/passwd", "..", ".", "a/../../b", "c1/../../x/victim",
           "C:victim", "c1\n", "\x00", "", " ", "c1\\..\\x", "c1\u202e"]


class _Watch:
    """Every file opened, listed, renamed or removed while active (an audit hook: it also
    sees C extensions and os-level calls)."""

    def __init__(self):
        self.active = False
        self.events: list[tuple[str, str, bool]] = []
        sys.addaudithook(self._hook)

    def _hook(self, event, args):
        if not self.active or threading.current_thread() is not threading.main_thread():
            return
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1] if len(args) > 1 else "r", args[2] if len(args) > 2 else 0
            write = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            self.events.append((event, os.fsdecode(args[0]), write))
        elif event in ("os.listdir", "os.scandir") and args and args[0] is not None:
            self.events.append((event, os.fsdecode(args[0]), False))
        elif event in ("os.rename", "os.remove", "os.rmdir", "os.mkdir") and args:
            for path in args[:2] if event == "os.rename" else args[:1]:
                self.events.append((event, os.fsdecode(path), True))


WATCH = _Watch()


def _under(path, folder):
    path = os.path.normpath(os.path.abspath(path))
    return path == folder or path.startswith(folder + os.sep)


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("ids")
    folder = base / "folder"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    (folder / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "a"},
                                                     "modality": {"0": "MRI"}}))
    rng = np.random.default_rng(0)
    for case in ("c1", "c2", "c3"):
        image = rng.random((8, 8, 2)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / "imagesTr" / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image((image > 0.5).astype(np.uint8), np.eye(4)),
                 folder / "labelsTr" / f"{case}.nii.gz")
    nnunet = base / "nnunet2d"
    (nnunet / "imagesTr").mkdir(parents=True)
    (nnunet / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1},
                                                     "channel_names": {"0": "photo"},
                                                     "file_ending": ".png"}))
    for case in ("c1", "c2", "c3"):
        pixels = (rng.random((16, 16)) * 255).astype(np.uint8)
        _write_png(nnunet / "imagesTr" / f"{case}_0000.png", pixels)
        _write_png(nnunet / "labelsTr" / f"{case}.png", (pixels > 128).astype(np.uint8))
    found = {
        "folder": ("folder", folder),
        "nnunet_2d": ("folder", nnunet),
        "image_pairs": ("folder", generate_phantom(base / "pairs", "lesions", 3, shape=(16, 16))),
        "synapse": ("synapse", generate_phantom(base / "synapse", "abdomen", 2, shape=(8, 8, 4))),
        "acdc": ("acdc", generate_phantom(base / "acdc", "cardiac", 2, shape=(8, 8, 4))),
    }
    for layout, (dataset, root) in found.items():  # libraries import and set up on first use
        _use(dataset, root, {"synapse": "1", "acdc": "1", "image_pairs": "lesion_0001"}.get(
            layout, "c1"), base / "warm" / layout)
    return {**found, "out": base / "out"}


def _use(dataset, root, case, out):
    """What test.py does with a case id: read its volumes, write its prediction files."""
    source = open_dataset(dataset, DataConfig(root=str(root), test_cases=[case]))
    for entry in source.entries("test"):
        item = source.volume_item(entry)
        labels = np.zeros(item.array.shape[-3:], np.uint8)
        if item.distance_unit == "px":
            write_image_prediction(labels, item.array, out, item.case, 2)
        else:
            out.mkdir(parents=True, exist_ok=True)
            path = output_paths(out, item.case, OutputKinds())["predictions"]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_labels(labels, with_header(item), path)


@pytest.mark.parametrize("layout", ["folder", "nnunet_2d", "image_pairs", "synapse", "acdc"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(st.sampled_from(HOSTILE + ["c1", "1", "case0001", "patient001",
                                                 "lesion_0001"]),
                      st.text(st.characters(codec="utf-8"), max_size=30)))
def test_no_case_id_reads_outside_the_root_or_writes_outside_the_output(roots, layout, case):
    dataset, root = roots[layout]
    out = roots["out"] / layout
    out.mkdir(parents=True, exist_ok=True)
    _watched(dataset, root, out, lambda: _use(dataset, root, case, out), case)


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_case_id_is_one_line_naming_it_and_its_source(case):
    with pytest.raises(InputError) as info:
        check_case_id(case, "data.test_cases[0]")
    assert str(info.value).startswith("data.test_cases[0]: case id ") and repr(case) in str(
        info.value)


@pytest.mark.parametrize("case", ["c1", "BRATS_001", "img0001", "Patient 7", "a.b", "~", "-", 12])
def test_ordinary_case_ids_pass(case):
    assert check_case_id(case, "x") == str(case)


def test_splits_json_and_set_name_the_bad_id_and_where_it_came_from(roots, tmp_path):
    _, folder = roots["folder"]
    with pytest.raises(InputError, match=r"data\.test_cases\[1\]: case id '\.\./x'"):
        open_dataset("folder", DataConfig(root=str(folder), test_cases=["c1", "../x"]))
    copy = tmp_path / "copy"
    os.symlink(folder / "imagesTr", tmp_path / "images")
    (copy / "labelsTr").mkdir(parents=True)
    for name in ("dataset.json",):
        (copy / name).write_text((folder / name).read_text())
    for case in ("c1", "c2", "c3"):
        os.symlink(folder / "labelsTr" / f"{case}.nii.gz", copy / "labelsTr" / f"{case}.nii.gz")
    os.symlink(tmp_path / "images", copy / "imagesTr")  # linked data inside the root: fine
    assert len(open_dataset("folder", DataConfig(root=str(copy), test_cases=["c1"])).entries(
        "test")) == 1
    (copy / "splits.json").write_text(json.dumps({"train": ["c1"], "test": ["/etc/passwd"]}))
    with pytest.raises(InputError, match=f"{copy / 'splits.json'} 'test': case id '/etc/passwd'"):
        open_dataset("folder", DataConfig(root=str(copy)))


def test_a_file_name_that_is_no_case_id_is_refused_naming_the_file(roots, tmp_path):
    _, folder = roots["folder"]
    copy = tmp_path / "copy"
    (copy / "labelsTr").mkdir(parents=True)
    (copy / "dataset.json").write_text((folder / "dataset.json").read_text())
    bad = copy / "labelsTr" / "c1\nc2.nii.gz"
    bad.write_bytes((folder / "labelsTr" / "c1.nii.gz").read_bytes())
    with pytest.raises(InputError, match="control"):
        open_dataset("folder", DataConfig(root=str(copy)))


def test_inside_follows_links_for_inputs_and_refuses_them_for_outputs(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "root" / "linked")
    assert inside(tmp_path / "root" / "linked" / "a.nii.gz", tmp_path / "root")
    with pytest.raises(InputError, match="outside --root"):
        inside(tmp_path / "root" / ".." / "x.nii.gz", tmp_path / "root", "--root")
    with pytest.raises(InputError, match="a link to"):
        inside_output(tmp_path / "root" / "linked" / "a.nii.gz", tmp_path / "root")
    assert inside_output(tmp_path / "root" / "new" / "a.nii.gz", tmp_path / "root")


def _layout_copy(roots, layout, tmp_path_factory):
    """A private copy of a layout's root, for examples that add files to it."""
    import shutil

    copy = tmp_path_factory.mktemp(f"copy_{layout}") / "root"
    shutil.copytree(roots[layout][1], copy, symlinks=True)
    return copy


def _watched(dataset, root, out, use, case=None):
    """Run ``use()`` under the watch; assert nothing outside ``root`` is read, nothing outside
    ``out`` written, and that a refusal is one line."""
    root_path, out_path = os.path.realpath(root), os.path.realpath(out)
    WATCH.events.clear()
    WATCH.active = True
    try:
        use()
    except InputError as exc:
        assert "\n" not in str(exc)
    finally:
        WATCH.active = False
    for event, path, write in WATCH.events:
        real = os.path.realpath(path)
        if write:
            assert _under(real, out_path), (case, event, path)
        else:
            assert _under(real, root_path) or _under(real, out_path) or any(
                _under(real, lib) for lib in LIBRARIES), (case, event, path)


def _use_every_split(dataset, root, out):
    """What train.py and test.py do with a data set's own case lists: every volume read, its
    prediction written."""
    source = open_dataset(dataset, DataConfig(root=str(root)))
    for split in ("train", "val", "test"):
        for entry in source.entries(split):
            _use(dataset, root, entry.case, out)


@pytest.mark.parametrize("layout", ["folder", "nnunet_2d", "image_pairs"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(st.sampled_from(HOSTILE), st.text(st.characters(codec="utf-8"), max_size=30)))
def test_no_case_id_of_a_splits_file_reads_or_writes_outside(roots, layout, case,
                                                             tmp_path_factory):
    root = _layout_copy(roots, layout, tmp_path_factory)
    out = roots["out"] / f"splits_{layout}"
    out.mkdir(parents=True, exist_ok=True)
    (root / "splits.json").write_text(json.dumps({"train": ["c1"], "test": [case]}))
    _watched("folder", root, out, lambda: _use_every_split("folder", root, out))


@pytest.mark.parametrize("layout", ["folder", "nnunet_2d"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.sampled_from(HOSTILE), st.text(st.characters(codec="utf-8"), max_size=30)))
def test_no_file_name_found_on_disk_reads_or_writes_outside(roots, layout, name,
                                                            tmp_path_factory):
    root = _layout_copy(roots, layout, tmp_path_factory)
    out = roots["out"] / f"names_{layout}"
    out.mkdir(parents=True, exist_ok=True)
    image, label = (("imagesTr/c1.nii.gz", "labelsTr/c1.nii.gz") if layout == "folder" else
                    ("imagesTr/c1_0000.png", "labelsTr/c1.png"))
    suffix_image, suffix_label = image.split("c1", 1)[1], label.split("c1", 1)[1]
    try:
        (root / f"imagesTr/{name}{suffix_image}").write_bytes((root / image).read_bytes())
        (root / f"labelsTr/{name}{suffix_label}").write_bytes((root / label).read_bytes())
    except (OSError, ValueError):  # a name no file can have (a separator, a NUL, too long)
        return
    _watched("folder", root, out, lambda: _use_every_split("folder", root, out))
