"""test.py as the tests call it: loaded by its path, once for every test module."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_test_py():
    # "test" is also the name of Python's own regression-test package: load test.py by path.
    spec = importlib.util.spec_from_file_location("swin_unet_test_cli", ROOT / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TEST_PY = _load_test_py()
