"""What each metric convention means, in words: one text for the table, the page and the JSON."""

from __future__ import annotations

__all__ = ["describe_conventions"]


def describe_conventions(conventions: str, unit: str = "mm") -> str:
    """The rules of ``conventions`` ("mm" or "paper") for distances in ``unit`` (mm, px, voxel).

    Examples
    --------
    >>> describe_conventions("mm", "px").startswith("HD95 in px")
    True
    """
    if conventions == "paper":
        return ("HD95 in voxels (spacing ignored); an empty prediction scores Dice 0 / HD95 0; "
                "a prediction where the ground truth is empty scores Dice 1 / HD95 0 "
                "(the published TransUNet / Swin-Unet conventions)")
    distance = "in mm from the voxel spacing" if unit == "mm" else f"in {unit}"
    return (f"HD95 {distance}; a class absent from both prediction and ground truth is not "
            f"counted (NaN, excluded from means); a missed class or a false positive scores "
            f"Dice 0 and HD95 = the image's diagonal in {unit}")
