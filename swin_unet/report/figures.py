"""Figures of results: per-case overlay montages, paper-style panels and box plots (matplotlib).

Slices are the last array axis. Matplotlib is imported only when a figure is drawn (figures are
rendered by its Agg canvas, without pyplot), so importing this module stays cheap.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_write
from ..palette import class_colour, grey_image, overlay_labels

__all__ = ["display_plan", "display_slice", "pick_figure_slices", "case_montage",
           "montage_figure", "present_classes", "paper_figure", "box_plots"]

PathLike = Union[str, Path]

# Smallest drawn side of an image panel and smallest figure width, in pixels: readable.
MIN_PANEL = 160
MIN_WIDTH = 360


def _grow(panel: np.ndarray, factor: int) -> np.ndarray:
    """``panel`` with each pixel repeated ``factor`` times along both axes."""
    return panel if factor == 1 else panel.repeat(factor, axis=0).repeat(factor, axis=1)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # a figure without pyplot: no global state, Agg output

    return Figure(figsize=(width, height))


def display_plan(affine: Optional[np.ndarray]) -> tuple[bool, bool, bool]:
    """How to show a slice (axes 0, 1) the way radiologists do: (transpose, flip rows, flip cols).

    The in-plane axis closer to a higher world axis (superior over anterior over right) runs
    down the rows with its positive end on top; the other runs along the columns, the patient's
    right on the viewer's left when it is the left-right axis. An identity affine means "no
    geometry" (TransUNet's npz/h5 releases, 2-D images): the slice is shown as stored.
    """
    if affine is None:
        return False, False, False
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or np.allclose(affine[:3, :3], np.eye(3)):
        return False, False, False
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    (world0, sign0), (world1, sign1) = ornt[0], ornt[1]
    if math.isnan(world0) or math.isnan(world1):
        return False, False, False
    transpose = world1 > world0
    row_sign, (col_world, col_sign) = (sign1, (world0, sign0)) if transpose \
        else (sign0, (world1, sign1))
    flip_cols = col_sign > 0 if col_world == 0 else col_sign < 0
    return bool(transpose), bool(row_sign > 0), bool(flip_cols)


def display_slice(volume: np.ndarray, z: int, plan: tuple[bool, bool, bool]) -> np.ndarray:
    """Slice ``z`` (last axis) of a (X, Y, Z) or (C, X, Y, Z) volume, oriented by ``plan``."""
    array = np.asarray(volume)
    if array.ndim == 4:  # several channels (modalities): the first is shown
        array = array[0]
    view = array[..., z]
    transpose, flip_rows, flip_cols = plan
    if transpose:
        view = view.T
    if flip_rows:
        view = view[::-1]
    if flip_cols:
        view = view[:, ::-1]
    return view


def _aspect(spacing: Optional[Sequence[float]], plan: tuple[bool, bool, bool]) -> float:
    """Height of a displayed pixel over its width, from the in-plane voxel spacing."""
    if spacing is None or len(spacing) < 2 or not all(s > 0 for s in spacing[:2]):
        return 1.0
    rows, cols = (spacing[1], spacing[0]) if plan[0] else (spacing[0], spacing[1])
    return float(rows) / float(cols)


def _slice_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, Z) voxel count of each class in each slice."""
    by_slice = np.moveaxis(np.asarray(labels), -1, 0).reshape(labels.shape[-1], -1)
    if by_slice.dtype.kind not in "ui":
        by_slice = by_slice.astype(np.int64)
    counts = np.zeros((num_classes, by_slice.shape[0]), dtype=np.int64)
    for z, values in enumerate(by_slice):
        found = np.bincount(values, minlength=num_classes)
        counts[:, z] = found[:num_classes]
    return counts


def pick_figure_slices(prediction: np.ndarray, label: Optional[np.ndarray],
                       class_names: Sequence[str]) -> list[tuple[int, str]]:
    """The slices that show most: (slice index, why), ordered by index.

    With a ground truth: for each class the slice where its ground-truth area is largest, and
    the slice with the most wrongly labelled voxels. Without one (a user's scan), the slices
    where each predicted class is largest. A volume of one slice (a 2-D image) gives slice 0.
    """
    depth = prediction.shape[-1]
    if depth == 1:
        return [(0, "")]
    reference = label if label is not None else prediction
    counts = _slice_counts(reference, len(class_names) + 1)
    reasons: dict[int, list[str]] = {}
    for index, name in enumerate(class_names, start=1):
        if counts[index].any():
            reasons.setdefault(int(np.argmax(counts[index])), []).append(name)
    if label is not None:
        errors = np.count_nonzero(np.asarray(prediction) != np.asarray(label),
                                  axis=tuple(range(prediction.ndim - 1)))
        if errors.any():
            reasons.setdefault(int(np.argmax(errors)), []).append("largest error")
    if not reasons:  # nothing labelled anywhere: the middle slice
        reasons[depth // 2] = []
    return [(z, ", ".join(reasons[z])) for z in sorted(reasons)]


def _is_colour(image: Optional[np.ndarray]) -> bool:
    """A (3, X, Y, Z) image: an RGB photograph, drawn in colour."""
    return image is not None and image.ndim == 4 and image.shape[0] == 3


def _display_window(image: np.ndarray) -> tuple[float, float]:
    """A robust window (0.5th to 99.5th percentile) of a volume, on a subsample; one window
    for the three channels of a colour image, so that its colours keep their balance."""
    sample = np.asarray(image if _is_colour(image) else image[0] if image.ndim == 4 else image)
    sample = sample[..., ::2, ::2, ::2] if sample.shape[-1] > 1 else sample
    low, high = np.percentile(sample, [0.5, 99.5]) if sample.size else (0.0, 1.0)
    return float(low), float(high)


def _text_px(text: str, fontsize: float, dpi: int) -> float:
    """A generous estimate of the width of ``text`` in pixels (DejaVu Sans averages 0.6 em)."""
    return 0.62 * fontsize * dpi / 72.0 * len(text)


def _legend_shape(entries: Sequence[tuple[int, str]], width: float, dpi: int,
                  fontsize: float = 9) -> tuple[int, int]:
    """(columns, rows) of a legend of ``entries`` wrapped to ``width`` pixels."""
    if not entries:
        return 1, 0
    entry = max(_text_px(name, fontsize, dpi) for _, name in entries) + 2.6 * fontsize
    columns = max(1, min(len(entries), int((width - 16) // entry)))
    return columns, math.ceil(len(entries) / columns)


def _legend(fig, entries: Sequence[tuple[int, str]], columns: int, fontsize: float = 9) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=np.array(class_colour(i)) / 255.0, edgecolor="none", label=name)
               for i, name in entries]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=columns, frameon=False,
                   fontsize=fontsize, handlelength=1.2, columnspacing=1.0)


def present_classes(class_names: Sequence[str], *labels: Optional[np.ndarray]
                    ) -> list[tuple[int, str]]:
    """(index, name) of each class found in any of ``labels``: what a legend lists."""
    found = set()
    for volume in labels:
        if volume is not None:
            found.update(int(v) for v in np.unique(np.asarray(volume)))
    return [(i, name) for i, name in enumerate(class_names, start=1) if i in found]


def _rows(image, label, prediction) -> list[tuple[str, Optional[np.ndarray]]]:
    rows = []
    if image is not None:
        rows.append(("image", None))
    if label is not None:
        rows.append(("ground truth", label))
    rows.append(("prediction", prediction))
    return rows


def _panel(image, labels, z, plan, window) -> np.ndarray:
    """The RGB panel of slice ``z``: grey image (or black) with ``labels`` coloured over it."""
    if _is_colour(image):
        grey = grey_image(np.stack([display_slice(c, z, plan) for c in image], -1), window)
    elif image is not None:
        grey = grey_image(display_slice(image, z, plan), window)
    else:
        grey = np.zeros(display_slice(labels, z, plan).shape, dtype=np.float32)
    if labels is None:
        return grey if grey.ndim == 3 else np.repeat(grey[..., None], 3, axis=-1)
    alpha = 0.5 if image is not None else 1.0
    return overlay_labels(grey, display_slice(labels, z, plan), alpha)


def montage_figure(title: str, prediction: np.ndarray,
                 class_names: Sequence[str], image: Optional[np.ndarray] = None,
                 label: Optional[np.ndarray] = None, affine: Optional[np.ndarray] = None,
                 spacing: Optional[Sequence[float]] = None,
                 slices: Optional[Sequence[tuple[int, str]]] = None, dpi: int = 100):
    """One case at a glance: a column per chosen slice; rows image, ground truth, prediction
    (a single 2-D image: the three side by side). Returns the matplotlib Figure.

    Parameters
    ----------
    title : str
        Shown above the panels (the case name and its scores).
    prediction : (X, Y, Z) int
        The predicted label volume.
    class_names : sequence of str
        Foreground class names (the legend), class 1 first.
    image : (X, Y, Z) or (C, X, Y, Z) array, optional
        The scan; without it labels are drawn on black.
    label : (X, Y, Z) int, optional
        The ground truth; without it (a user's scan) that row is left out.
    affine, spacing : optional
        Orientation and in-plane aspect of the display (:func:`display_plan`).
    slices : sequence of (int, str), optional
        Slices and captions; default :func:`pick_figure_slices`.
    """
    plan = display_plan(affine)
    slices = list(slices) if slices is not None else pick_figure_slices(prediction, label,
                                                                       class_names)
    rows = _rows(image, label, prediction)
    window = _display_window(image) if image is not None else None
    aspect = _aspect(spacing, plan)
    # One mosaic in one Axes, panels about 256 pixels a side (every n-th pixel: labels stay
    # crisp; small images repeated up to a readable size), drawn pixel for pixel.
    height, width = display_slice(prediction, 0, plan).shape
    step = max(1, int(round(max(height, width * aspect) / 256)))
    grow = max(1, math.ceil(MIN_PANEL / max(height, width * aspect)))
    panels = [[_grow(_panel(image, labels, z, plan, window)[::step, ::step], grow)
               for z, _ in slices] for _, labels in rows]
    single = prediction.shape[-1] == 1
    if single:  # one image: image, ground truth and prediction side by side
        panels = [[row[0] for row in panels]]
        captions = [name for name, _ in rows]
        row_names: list[str] = []
    else:
        captions = [f"slice {z}\n{why}" if why else f"slice {z}" for z, why in slices]
        row_names = [name for name, _ in rows]
    ph, pw = panels[0][0].shape[:2]
    gap = 4
    mosaic = np.ones((len(panels) * (ph + gap) - gap, len(panels[0]) * (pw + gap) - gap, 3),
                     dtype=np.float32)
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            mosaic[r * (ph + gap):r * (ph + gap) + ph, c * (pw + gap):c * (pw + gap) + pw] = panel
    entries = present_classes(class_names, label, prediction)
    left = 28 if row_names else 8
    width_px = max(left + mosaic.shape[1] + 8, _text_px(title, 10, dpi) + 24, MIN_WIDTH)
    columns, legend_rows = _legend_shape(entries, width_px, dpi)
    top = 34 + 14 * max(c.count("\n") + 1 for c in captions)
    bottom = 14 + 20 * legend_rows
    shown_h = mosaic.shape[0] * aspect
    fig = _figure(width_px / dpi, (top + shown_h + bottom) / dpi)
    W, H = width_px, fig.get_figheight() * dpi
    left = max(left, (W - mosaic.shape[1]) / 2)
    ax = fig.add_axes((left / W, bottom / H, mosaic.shape[1] / W, shown_h / H))
    ax.imshow(mosaic, aspect=aspect, interpolation="nearest")
    ax.set_axis_off()
    for c, caption in enumerate(captions):
        ax.text(c * (pw + gap) + pw / 2, -3, caption, ha="center", va="bottom", fontsize=8)
    for r, name in enumerate(row_names):
        ax.text(-4, r * (ph + gap) + ph / 2, name, rotation=90, ha="right", va="center",
                fontsize=9)
    fig.text(0.5, 1 - 4 / H, title, ha="center", va="top", fontsize=10)
    _legend(fig, entries, columns)
    return fig


def case_montage(path: PathLike, title: str, prediction: np.ndarray,
                 class_names: Sequence[str], dpi: int = 100, **kwargs) -> Path:
    """Write :func:`montage_figure` (same arguments) as the PNG ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = montage_figure(title, prediction, class_names, dpi=dpi, **kwargs)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=dpi))


def paper_figure(path: PathLike, image: np.ndarray, label: Optional[np.ndarray],
                 prediction: np.ndarray, slices: Sequence[int], class_names: Sequence[str],
                 affine: Optional[np.ndarray] = None, spacing: Optional[Sequence[float]] = None,
                 dpi: int = 300, case: str = "") -> Path:
    """The published figure's panels: a row per slice; columns image, ground truth, prediction.

    No axes or ticks; column titles on top and the class legend below; ``dpi`` for print.

    Raises
    ------
    InputError
        A slice index outside the volume (the message names ``case`` and the slice).
    """
    depth = prediction.shape[-1]
    bad = [z for z in slices if not 0 <= z < depth]
    if bad:
        raise InputError(f"{case}: slice {bad[0]} is outside the volume (slices 0..{depth - 1})")
    plan = display_plan(affine)
    window = _display_window(image) if image is not None else None
    rows = _rows(image, label, prediction)
    height, width = display_slice(prediction, 0, plan).shape
    aspect = _aspect(spacing, plan)
    panel_w = 1.8
    panel_h = panel_w * height * aspect / width
    entries = present_classes(class_names, label, prediction)
    columns, legend_rows = _legend_shape(entries, panel_w * len(rows) * dpi, dpi, fontsize=9)
    legend_h = 0.15 + 0.2 * legend_rows
    fig = _figure(panel_w * len(rows), 0.3 + panel_h * len(slices) + legend_h)
    axes = fig.subplots(len(slices), len(rows), squeeze=False)
    for r, z in enumerate(slices):
        for c, (name, labels) in enumerate(rows):
            ax = axes[r][c]
            ax.imshow(_panel(image, labels, z, plan, window), aspect=aspect,
                      interpolation="nearest")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(name[0].upper() + name[1:], fontsize=9)
    _legend(fig, entries, columns)
    fig.subplots_adjust(left=0.01, right=0.99, wspace=0.02, hspace=0.02,
                        top=1 - 0.3 / fig.get_figheight(), bottom=legend_h / fig.get_figheight())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi))


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def box_plots(path: PathLike, summary: dict, dpi: int = 100) -> Path:
    """Dice (%) and HD95 per class over cases as box plots, boxes in the class colours.

    ``summary`` is :func:`swin_unet.evaluation.metrics.summarize`'s (``classes`` and ``cases``); values
    not counted (NaN) are left out; the HD95 plot only when HD95 was computed.
    """
    names = list(summary["classes"])
    cases = summary["cases"].values()
    dice = [[100.0 * v for v in _finite(case[name]["dice"] for case in cases)] for name in names]
    panels = [("Dice (%)", dice)]
    if summary.get("mean_hd95") is not None:
        unit = summary.get("hd95_unit", "mm")
        panels.append((f"HD95 ({unit})",
                       [_finite(case[name]["hd95"] for case in cases) for name in names]))
    fig = _figure(max(5.0, 0.7 * len(names) + 1.5) * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ylabel, data) in zip(axes, panels):
        drawn = ax.boxplot([d if d else [math.nan] for d in data], patch_artist=True,
                           widths=0.6, medianprops={"color": "black"})
        for index, box in enumerate(drawn["boxes"], start=1):
            box.set_facecolor(np.array(class_colour(index)) / 255.0)
            box.set_alpha(0.8)
        for index, values in enumerate(data, start=1):  # every case as a dot over its box
            ax.plot(np.full(len(values), index), values, "o", color="black", markersize=2.5)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"per class over {summary['n_cases']} case(s)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
