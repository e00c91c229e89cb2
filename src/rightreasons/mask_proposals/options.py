"""The settings of mask proposals: names, defaults, and their validation (one-line errors naming the
setting)."""

from __future__ import annotations

import math

from ..errors import UserError

#: what proposes the masks: a model's own saliency, a teacher's, or a find-another run's masks
SOURCES = ("saliency", "teacher", "find-another")
ATTRIBUTIONS = ("gradient", "ig")
CHOICES = ("occlusion", "largest")
SELECTIONS = ("all", "relied")
#: where candidate regions come from: the model's saliency, or pixels unusual for their position
CANDIDATE_SOURCES = ("saliency", "atypical")
#: the defaults of :func:`propose_masks`
DEFAULTS = {"threshold": 0.3, "top_fraction": None, "dilate": 1, "min_area": 4, "components": 1,
            "connectivity": 8, "attribution": "gradient", "choose": "occlusion", "candidates": 5,
            "select": "relied", "min_drop": 0.05, "max_fraction": 0.1,
            "candidates_from": "saliency", "atypical_threshold": 3.0, "min_purity": 0.0, "purity_k": 10}
#: the defaults of :func:`teacher_masks`
TEACHER_DEFAULTS = {"quantile": 0.5, "smooth": 0, "dilate": 0, "min_area": 0, "connectivity": 8,
                    "attribution": "gradient"}


def _check_number(name: str, value, low: float, high: float, integer: bool = False, open_low: bool = False,
                  where: str = "propose_masks", open_high: bool = False):
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)) \
            or value < low or value > high or (open_low and value == low) or (open_high and value == high):
        kind = "an integer" if integer else "a number"
        bracket = "(" if open_low else "["
        closing = ")" if open_high else "]"
        raise UserError(f"{where}: {name} must be {kind} in {bracket}{low:g}, {high:g}{closing}, got {value!r}")
    return value


def _check_connectivity(connectivity, where: str = "propose_masks") -> None:
    if connectivity not in (4, 8) or isinstance(connectivity, bool):
        raise UserError(f"{where}: connectivity must be 4 or 8, got {connectivity!r}")


def _check_postprocess(threshold, top_fraction, dilate, min_area, components, connectivity) -> None:
    _check_number("threshold", threshold, 0, 1, open_low=True)
    if top_fraction is not None:
        _check_number("top_fraction", top_fraction, 0, 1, open_low=True)
    _check_number("dilate", dilate, 0, 10_000, integer=True)
    _check_number("min_area", min_area, 0, 10**9, integer=True)
    _check_number("components", components, 1, 10**9, integer=True)
    _check_connectivity(connectivity)


def _image_shape(dataset) -> tuple[int, int, int]:
    shape = tuple(getattr(dataset, "input_shape", ()))
    if len(shape) != 3:
        name = getattr(dataset, "name", "dataset")
        raise UserError(f"{name}: mask proposals need images (N, C, H, W), got inputs of shape (N, "
                     f"{', '.join(map(str, shape))})")
    return shape
