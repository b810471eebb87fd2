"""test.py --cross-validation: each fold's best checkpoint scored on its own validation cases.

The runs of one cross-validation (``train.py --fold K``) give one table over every case they
validated, each case once, with the fold it came from. With ``--compare``, the runs of several
configurations (grouped by parent folder, ``runs/<config>/fold_K``) are scored each into its
own subfolder, then compared (:mod:`swin_unet.evaluation.compare`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..data_layer import project_datasets
from ..errors import InputError
from ..report.builder import report_for
from .output_folder import RunResult, check_output, remove_results
from .networks import inference_options, request_overrides
from .run import EvaluationRequest, evaluate_volumes

__all__ = ["FoldRun", "cross_validate", "read_fold_run", "group_runs"]

logger = logging.getLogger(__name__)

BEST = Path("checkpoints") / "best.pth"


@dataclass
class FoldRun:
    """One run folder of a cross-validation: its best checkpoint, fold and validation cases."""

    run: Path
    loaded: object  # LoadedModel
    fold: str
    folds: int
    cases: list[str]

    @property
    def checkpoint(self) -> Path:
        return self.run / BEST

    def data_set(self) -> tuple[str, str]:
        """(data set, its folder resolved): what two folds must share."""
        config = self.loaded.config
        root = config.data.root or project_datasets().default_root(config.dataset) or ""
        return config.dataset, str(Path(root).resolve()) if root else ""


def read_fold_run(run: Path, dataset: Optional[str], overrides: Sequence[str]) -> FoldRun:
    """The fold trained in ``run`` (``train.py --fold K``), its best checkpoint loaded.

    Raises
    ------
    InputError
        Not a run folder, no best checkpoint, a run that is not a fold or has no validation.
    """
    from .trained import load_model

    run = Path(run)
    if not (run / BEST).is_file():
        raise InputError(f"{run}: no {BEST.as_posix()} (a run folder of train.py --fold K, "
                         f"which validates, has one)", path=run)
    loaded = load_model(run / BEST, dataset, overrides)
    data = loaded.config.data
    if data.fold is None:
        raise InputError(f"{run}: not a cross-validation fold (trained without --fold)",
                         path=run)
    if data.fold == "all" or not data.val_cases:
        raise InputError(f"{run}: fold {data.fold} has no validation cases to score", path=run)
    return FoldRun(run, loaded, data.fold, int(data.folds), list(data.val_cases))


def group_runs(runs: Sequence[FoldRun], compare: bool) -> dict[str, list[FoldRun]]:
    """Runs by configuration: their parent folder's name with ``compare``, else one group.

    Raises
    ------
    InputError
        Runs of different data sets or fold counts, or two runs of one configuration whose
        validation cases overlap; the message names both runs.
    """
    first = runs[0]
    for other in runs[1:]:
        if other.data_set() != first.data_set():
            raise InputError(f"--cross-validation: {first.run} and {other.run} come from "
                             f"different data sets ({' at '.join(first.data_set())} and "
                             f"{' at '.join(other.data_set())})")
        if other.folds != first.folds:
            raise InputError(f"--cross-validation: {first.run} is a fold of {first.folds}, "
                             f"{other.run} of {other.folds}")
        if list(other.loaded.class_names) != list(first.loaded.class_names):
            raise InputError(f"--cross-validation: {first.run} and {other.run} predict "
                             f"different classes")
    groups: dict[str, list[FoldRun]] = {}
    for fold_run in runs:
        name = fold_run.run.resolve().parent.name if compare else ""
        groups.setdefault(name, []).append(fold_run)
    for name, members in groups.items():
        seen: dict[str, FoldRun] = {}
        for fold_run in members:
            common = sorted(c for c in fold_run.cases if c in seen)
            if common:
                hint = "" if compare else " (several configurations: --compare)"
                raise InputError(f"--cross-validation: {seen[common[0]].run} and {fold_run.run} "
                                 f"both validate on {', '.join(common[:3])}"
                                 f"{'...' if len(common) > 3 else ''}; give each fold once"
                                 f"{hint}")
            seen.update(dict.fromkeys(fold_run.cases, fold_run))
    if compare and len(groups) < 2:
        raise InputError("--compare: all runs are in one folder; give the fold runs of two or "
                         "more configurations, each configuration's folds in its own folder")
    return groups


def _score(runs: list[FoldRun], output: Path, request: EvaluationRequest, device) -> RunResult:
    """Every run's validation volumes into one metrics.csv, summary.json and report."""
    datasets = project_datasets()
    first = runs[0].loaded
    options = inference_options(request, first, device)
    sources = [datasets.open_dataset(r.loaded.config.dataset, r.loaded.config.data)
               for r in runs]
    fold_of_case: dict[str, str] = {}
    for fold_run, source in zip(runs, sources):
        source.check_integrity(("val",))  # every fold's cases readable before the first runs
        fold_of_case.update({entry.name: fold_run.fold for entry in source.entries("val")})
    extra = {"checkpoints": [str(r.checkpoint) for r in runs], "n_listed": len(fold_of_case),
             "cross_validation": [{"fold": r.fold, "of": r.folds, "run": str(r.run),
                                   "checkpoint": str(r.checkpoint), "cases": r.cases}
                                  for r in runs],
             "fold_of_case": fold_of_case}
    report = report_for(request, output, first.class_names, options, **{
        "cross-validation": "; ".join(f"fold {r.fold} of {r.folds}: {r.checkpoint}"
                                      for r in runs),
        "split": "validation, each fold its own", "data root": first.config.data.root})
    per_case: dict = {}
    written: list[Path] = []
    note = None
    if not sources[0].stores_spacing:
        note = (f"{sources[0].layout}: the release stores no voxel spacing; unit spacing is "
                f"used, so HD95 is in voxels even in mm mode")
    for i, (fold_run, source) in enumerate(zip(runs, sources)):
        logger.info("fold %s (%s): %d validation volume(s)", fold_run.fold, fold_run.run,
                    len(source.entries("val")))
        # The tables grow fold by fold; only the last call completes them and the report.
        result = evaluate_volumes(fold_run.loaded, source.volumes("val"), output, options,
                                  request.save_nifti, note, report, request.save_probabilities,
                                  scored=per_case, complete=i == len(runs) - 1, extra=extra)
        written += result.written
    result.written = written
    if len(runs) < runs[0].folds:
        result.notes.append(f"{len(runs)} of {runs[0].folds} folds scored: the table covers "
                            f"only their validation cases")
    return result


def cross_validate(request: EvaluationRequest) -> RunResult:
    """Score the runs of ``request.cross_validation``; with ``compare``, compare configurations.

    One configuration: ``output/metrics.csv``, ``summary.json`` (with ``fold_of_case`` and
    the runs under ``cross_validation``) and the report. Several (``compare``): the same in
    ``output/<configuration>/`` each, and ``output/compare.md`` and ``compare.csv``.

    Raises
    ------
    InputError
        Options that do not go with it, a run that is not a fold with validation, runs of
        different data sets or fold counts, overlapping folds, results in ``output`` (without
        ``overwrite``).
    """
    from .inference import resolve_device

    if request.checkpoint or request.input or request.predictions or request.labels:
        raise InputError("--cross-validation scores each run's own best checkpoint: drop "
                         "--checkpoint, --input and --predictions/--labels")
    if request.output is None:
        raise InputError("--cross-validation needs --output")
    paths = [Path(r) for r in request.cross_validation]
    repeated = next((p for i, p in enumerate(paths)
                     if p.resolve() in {q.resolve() for q in paths[:i]}), None)
    if repeated is not None:
        raise InputError(f"--cross-validation: {repeated} given twice", path=repeated)
    output = Path(request.output)
    runs = [read_fold_run(p, request.dataset, request_overrides(request)) for p in paths]
    groups = group_runs(runs, request.compare)
    folders = {name: output / name if name else output for name in groups}
    from .compare import COMPARE_FILES, compare_groups

    stale = [f for name, folder in folders.items()
             for f in check_output(folder, request.overwrite,
                                   [output / f for f in COMPARE_FILES] if name else [])]
    remove_results(output, stale)
    device = resolve_device(request.device)
    results = {name: _score(members, folders[name], request, device)
               for name, members in groups.items()}
    if not request.compare:
        return results[""]
    return compare_groups(results, output)
