"""Bounded resources: bombs are refused from their headers, in seconds and little memory."""

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from swin_unet.errors import InputError
from swin_unet.io import validity
from swin_unet.io.images import read_image, read_image_header
from swin_unet.io.volumes import read_volume
from swin_unet.model.checkpoints import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
# Reads the file named on the command line in a fresh process (the modules imported first, as
# in a command line): the seconds the read took, the process's peak resident size and the error.
# VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across fork and exec.
PROBE = """
import json, re, sys, time
sys.path.insert(0, sys.argv[1])
from swin_unet.errors import InputError
from swin_unet.io.images import read_image
from swin_unet.model.checkpoints import read_checkpoint
kind, path = sys.argv[2], sys.argv[3]
start = time.perf_counter()
try:
    (read_checkpoint if kind == "checkpoint" else read_image)(path)
    error = None
except InputError as exc:
    error = str(exc)
seconds = time.perf_counter() - start
with open("/proc/self/status") as handle:
    peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", handle.read()).group(1)) * 1024
print(json.dumps({"seconds": seconds, "error": error, "peak": peak}))
"""


def _probe(kind, path):
    """(seconds, peak resident bytes, error) of reading ``path`` in a subprocess."""
    done = subprocess.run([sys.executable, "-c", PROBE, str(REPO), kind, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], result["peak"], result["error"]


def _deflated_bomb(path, inflated=400 << 20):
    """A zip shaped like torch.save's, one member deflating ``inflated`` zero bytes."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("archive/data.pkl"), b"\x80\x02}q\x00.")
        with archive.open("archive/data/0", "w", force_zip64=True) as member:
            for _ in range(inflated // len(chunk)):
                member.write(chunk)
    return path


def _lying_stored(path, tmp_path):
    """A real checkpoint whose central directory says its largest (stored) member holds
    4 GiB: the uncompressed size, offset 24 of each central header, rewritten."""
    torch.save({"model": {"w": torch.zeros(64)}}, tmp_path / "real.pth")
    data = bytearray((tmp_path / "real.pth").read_bytes())
    with zipfile.ZipFile(tmp_path / "real.pth") as archive:
        target = max(archive.infolist(), key=lambda i: i.file_size).filename.encode()
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46:at + 46 + name_length]) == target:
            struct.pack_into("<I", data, at + 24, 0xFFFFFFF0)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))
    return path


def test_a_deflate_bomb_checkpoint_is_refused_unread_fast_and_small(tmp_path):
    path = _deflated_bomb(tmp_path / "bomb.pth")
    assert path.stat().st_size < 2 << 20
    seconds, peak, error = _probe("checkpoint", path)
    assert error and str(path) in error and "compressed" in error and "\n" not in error
    assert seconds < 5 and peak < 1 << 30, (seconds, peak)


def test_a_stored_member_that_lies_about_its_size_is_refused(tmp_path):
    path = _lying_stored(tmp_path / "lies.pth", tmp_path)
    with pytest.raises(InputError) as caught:
        read_checkpoint(path)
    assert str(path) in str(caught.value) and "declares" in str(caught.value)


def test_a_checkpoint_torch_wrote_passes_the_archive_check(tmp_path):
    torch.save({"model": {"w": torch.ones(1000)}, "epoch": 3}, tmp_path / "ok.pth")
    assert read_checkpoint(tmp_path / "ok.pth")["epoch"] == 3


@pytest.mark.parametrize("make", ["fifo", "dev_zero", "folder"])
def test_a_checkpoint_that_is_no_regular_file_says_so(tmp_path, make):
    path = tmp_path / "c.pth"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "folder":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    with pytest.raises(InputError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == f"{path}: not a regular file"


def test_a_pixel_bomb_png_is_refused_before_decoding_fast_and_small(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (12000, 12000)).save(path, optimize=True)
    assert path.stat().st_size < 1 << 20
    seconds, peak, error = _probe("image", path)
    assert error and str(path) in error and "12000x12000 = 144000000 pixels" in error
    assert "--max-pixels" in error and "\n" not in error
    assert seconds < 5 and peak < 1 << 30, (seconds, peak)


def test_pillow_bomb_limits_become_the_same_one_line(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("1", (20000, 10000)).save(path)
    try:
        validity.set_max_pixels(10_000_000)  # Pillow's own error: twice its limit exceeded
        with pytest.raises(InputError, match=r"200000000 pixels is above the limit of 10000000"):
            read_image_header(path)
        validity.set_max_pixels(300_000_000)
        assert read_image_header(path).shape == (10000, 20000)
    finally:
        validity.set_max_pixels(None)


def test_the_pixel_limit_is_a_setting(tmp_path):
    path = tmp_path / "small.png"
    Image.new("L", (40, 30)).save(path)
    try:
        validity.set_max_pixels(1000)
        with pytest.raises(InputError, match="40x30 = 1200 pixels is above the limit of 1000"):
            read_image(path)
        validity.set_max_pixels(1200)
        assert read_image(path).shape == (1, 30, 40)
        with pytest.raises(InputError, match="data.max_pixels"):
            validity.set_max_pixels(0)
    finally:
        validity.set_max_pixels(None)


def test_a_volume_larger_than_the_memory_available_is_refused_naming_both(tmp_path, monkeypatch):
    path = tmp_path / "big.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 32), np.int16), np.eye(4)), path)
    monkeypatch.setattr(validity, "available_memory", lambda: 1 << 20)
    with pytest.raises(InputError) as caught:
        read_volume(path)
    message = str(caught.value)
    assert str(path) in message and "131072 voxels" in message and "0.0 GiB" in message
    monkeypatch.setattr(validity, "available_memory", lambda: None)  # unknown: not checked
    assert read_volume(path).array.shape == (64, 64, 32)


def test_memory_available_is_read_from_proc_meminfo():
    available = validity.available_memory()
    if not Path("/proc/meminfo").is_file():
        assert available is None
    else:
        assert available > 0
