"""The house's layout: rooms by job, short files and CLIs, a front-page README, one-way imports."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "swin_unet"


def _product_files(suffixes=(".py",)) -> list[Path]:
    """The product's files: the library, the data sets, the benchmarks, the CLIs (not tests/)."""
    files = [p for p in REPO.glob("*") if p.is_file() and p.suffix in suffixes]
    for folder in ("swin_unet", "datasets", "benchmarks", "configs"):
        files += [p for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix in suffixes]
    return sorted(files)


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_at_most_eight_modules_sit_directly_in_the_package():
    modules = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 8, modules


def test_each_subpackage_says_its_job_in_the_first_line_of_its_init():
    packages = sorted(p.parent for p in PACKAGE.glob("*/__init__.py"))
    assert {p.name for p in packages} >= {"model", "config", "io", "evaluation", "report",
                                          "training", "explain"}
    for package in packages:
        source = (package / "__init__.py").read_text(encoding="utf-8")
        lines = source.splitlines()
        docstring = ast.get_docstring(ast.parse(source))
        assert lines and lines[0].startswith('"""') and docstring, package
        summary = lines[0][3:].removesuffix('"""').strip()
        assert summary and summary == docstring.splitlines()[0], package
        assert len(lines[0]) <= 100 and summary.endswith("."), package
        # A longer docstring leaves a blank line after its one-line summary.
        if not lines[0].rstrip().endswith('"""') or lines[0].strip() == '"""':
            assert len(lines) > 1 and lines[1].strip() in ("", '"""'), package


def test_no_product_file_is_over_400_lines_and_train_py_stays_thin():
    long = {str(p.relative_to(REPO)): n for p in _product_files() if (n := _lines(p)) > 400}
    assert not long
    assert _product_files(), "no product files found"
    assert _lines(REPO / "train.py") <= 150


def test_the_readme_is_a_front_page_with_the_detail_in_docs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    pages = sorted((REPO / "docs").glob("*.md"))
    assert len(pages) >= 3, pages
    for name in ("usage", "data", "model", "performance", "architecture"):
        assert (REPO / "docs" / f"{name}.md").is_file(), name
        assert f"docs/{name}.md" in readme, name


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file():
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(REPO)}: broken link {target}"


def test_the_readme_test_command_is_the_one_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    # The install line, then the test line (a clean-up line may stand between, a slow-test line
    # may follow).
    lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    install = next(line for line in lines if line.startswith("pip install -q torch"))
    assert "python -m pytest -q" in lines[lines.index(install) + 1:]
    ci = install + " && python -m pytest -q"
    # The CI lines are the README's install-and-test line with pip's -q added.
    readme_line = next(line for line in readme.splitlines()
                       if line.startswith("pip install") and "pytest" in line)
    assert ci.replace("pip install -q ", "pip install ") == readme_line


_NARRATION = [
    re.compile(r"\b(?:later|earlier|previous|next|first|last|latest|other|several|\d+) "
               r"sessions?\b", re.IGNORECASE),
    re.compile(r"\bsession \d+\b", re.IGNORECASE),
    re.compile(r"\bissues? #?\d+\b", re.IGNORECASE),
    re.compile(r"\bthe (?:training|speed|house|report|docs) issue\b", re.IGNORECASE),
    re.compile(r"\bcommit [0-9a-f]{7,40}\b"),
]


def _narration(text: str) -> list[str]:
    """Phrases that narrate development: sessions, issues, commit hashes."""
    found = [m.group(0) for pattern in _NARRATION for m in pattern.finditer(text)]
    # A bare commit hash: 7-40 lowercase hex digits with at least one letter and one digit.
    found += [word for word in re.findall(r"\b[0-9a-f]{7,40}\b", text)
              if re.search(r"[a-f]", word) and re.search(r"[0-9]", word)]
    return found


def test_the_narration_check_finds_what_it_looks_for():
    assert _narration("3 min 37 s in a later session (commit 3405e41); the training issue") == [
        "later session", "the training issue", "commit 3405e41", "3405e41"]
    assert _narration("the results of an earlier run; DICOM UID 1.2.826.0.1.3680043") == []


def test_nothing_in_the_readme_docs_or_product_narrates_development():
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
             *_product_files((".py", ".yaml", ".sh", ".toml", ".txt"))]
    found = {str(p.relative_to(REPO)): hits for p in files
             if (hits := _narration(p.read_text(encoding="utf-8")))}
    assert not found


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (at the top or inside functions), as absolute names."""
    package = list(path.relative_to(REPO).parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


# (room, modules it must not import): data flows io -> datasets -> training -> evaluation ->
# report; swin_unet.data_layer is the library's door to datasets.
_DATASETS = ("datasets", "swin_unet.data_layer")
_ONE_WAY = [
    ("swin_unet/io", _DATASETS + ("swin_unet.training", "swin_unet.evaluation",
                                  "swin_unet.report")),
    ("datasets", ("swin_unet.training", "swin_unet.evaluation", "swin_unet.report")),
    ("swin_unet/report", _DATASETS + ("swin_unet.training", "swin_unet.evaluation")),
    ("swin_unet/evaluation", ("swin_unet.training",)),
]


def _upward_imports(room: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in sorted((REPO / room).rglob("*.py")):
        bad = sorted(name for name in _imports(path)
                     if any(name == f or name.startswith(f + ".") for f in forbidden))
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


def test_the_import_check_sees_relative_absolute_and_nested_imports(tmp_path, monkeypatch):
    assert "swin_unet.errors" in _imports(REPO / "swin_unet" / "io" / "volumes.py")
    fake = tmp_path / "swin_unet" / "report" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..training import loop\nfrom . import images\nimport numpy\n"
                    "def f():\n    import datasets.slices\n")
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert {"swin_unet.training", "swin_unet.training.loop", "swin_unet.report.images",
            "datasets.slices", "numpy"} <= _imports(fake)
    assert _upward_imports("swin_unet/report", dict(_ONE_WAY)["swin_unet/report"]) == {
        "swin_unet/report/probe.py": ["datasets.slices", "swin_unet.training",
                                      "swin_unet.training.loop"]}


@pytest.mark.parametrize("room,forbidden", _ONE_WAY, ids=[room for room, _ in _ONE_WAY])
def test_data_flows_one_way(room, forbidden):
    assert (REPO / room).exists(), room
    assert not _upward_imports(room, forbidden)
