"""Data augmentation that moves each image and its mask together: seeded, on whole batches, on any device.

Geometric transforms (random resized crop, flips, rotation, translation, scale, shear) are composed into
one affine sampling map per example and applied with one ``F.affine_grid`` + ``F.grid_sample`` for the
whole batch: the image bilinearly, the mask with ``mode="nearest"`` on the same grid, so it keeps exactly
the values it had ({0, 1}). Padding (``padding``: ``border`` by default, or ``zeros`` / ``reflection``)
is the same for image and mask, so a pixel that comes from outside the image is marked exactly when
the image pixel it copies is: with ``zeros`` it is 0 in both; with ``border`` it repeats the nearest
edge pixel in both (a shortcut touching the edge, smeared outwards, stays masked). Colour jitter
(brightness, contrast, saturation, hue) changes the image only and needs inputs in [0, 1].
Labels, groups and ``has_mask`` pass through; an all-zero mask stays all zero.

Randomness comes only from the ``torch.Generator`` passed to each call: one ``torch.rand((B, NUM_DRAWS))``
on the generator's device, row i for example i, columns in the order of :data:`SLOTS` (every slot is
drawn whatever is enabled, so enabling one transform does not change another's draws). A config that
changes nothing returns the batch itself and draws nothing. Pure torch (no torchvision / kornia), so
that the generator is the only source of randomness.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F

from ..batch import Batch
from ..devices import rand_like
from ..errors import UserError

#: the per-example random numbers, in the order they are drawn (one row of NUM_DRAWS uniforms per example)
SLOTS = ("crop_area", "crop_ratio", "crop_x", "crop_y", "hflip", "vflip", "rotation", "translate_x",
         "translate_y", "scale", "shear", "brightness", "contrast", "saturation", "hue")
NUM_DRAWS = len(SLOTS)
SLOT = {name: i for i, name in enumerate(SLOTS)}

PADDINGS = ("border", "zeros", "reflection")
#: ITU-R 601 luma weights (grayscale of RGB)
LUMA = (0.299, 0.587, 0.114)

PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "flip": {"hflip": 0.5},
    "standard": {"crop_scale": (0.8, 1.0), "crop_ratio": (3 / 4, 4 / 3), "hflip": 0.5, "rotation": 10.0,
                 "translate": 0.05, "brightness": 0.2, "contrast": 0.2},
    "strong": {"crop_scale": (0.5, 1.0), "crop_ratio": (3 / 4, 4 / 3), "hflip": 0.5, "vflip": 0.5,
               "rotation": 20.0, "translate": 0.1, "shear": 5.0, "brightness": 0.4, "contrast": 0.4,
               "saturation": 0.4, "hue": 0.05},
}


def _number(key: str, value, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UserError(f"augmentation option {key} must be {what}, got {value!r}")
    return float(value)


def _pair(key: str, value, low: float, high: float, what: str) -> tuple[float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and low <= v <= high for v in value)
    if not ok or not value[0] <= value[1]:
        raise UserError(f"augmentation option {key} must be [low, high] with {what} and low <= high, got {value!r}")
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class AugmentConfig:
    """What to augment; the defaults change nothing. Every value is validated (one-line error naming the key).

    crop_scale:  random resized crop, area fraction of the crop, uniform in [low, high] (0 < low <= high <= 1).
    crop_ratio:  its aspect ratio width/height, log-uniform in [low, high]; the crop is resized to the input size.
    hflip/vflip: probability of a horizontal / vertical flip.
    rotation:    degrees, uniform in [-rotation, rotation].
    translate:   fraction of width (height), uniform in [-translate, translate] per axis.
    scale:       zoom factor, uniform in [low, high] (> 1 enlarges).
    shear:       degrees of horizontal shear, uniform in [-shear, shear].
    brightness, contrast, saturation: factor uniform in [max(0, 1 - v), 1 + v].
    hue:         shift of the hue, uniform in [-hue, hue] turns (at most 0.5).
    padding:     what pixels from outside the image show: border, zeros or reflection (image and mask alike).
    """

    crop_scale: tuple[float, float] = (1.0, 1.0)
    crop_ratio: tuple[float, float] = (1.0, 1.0)
    hflip: float = 0.0
    vflip: float = 0.0
    rotation: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    padding: str = "border"

    def __post_init__(self):
        checked = {
            "crop_scale": _pair("crop_scale", self.crop_scale, 1e-6, 1.0, "0 < low <= high <= 1"),
            "crop_ratio": _pair("crop_ratio", self.crop_ratio, 1e-3, 1e3, "values in [0.001, 1000]"),
            "hflip": _number("hflip", self.hflip, 0.0, 1.0, "a probability in [0, 1]"),
            "vflip": _number("vflip", self.vflip, 0.0, 1.0, "a probability in [0, 1]"),
            "rotation": _number("rotation", self.rotation, 0.0, 180.0, "degrees in [0, 180]"),
            "translate": _number("translate", self.translate, 0.0, 1.0, "a fraction in [0, 1]"),
            "scale": _pair("scale", self.scale, 1e-3, 1e3, "values in [0.001, 1000]"),
            "shear": _number("shear", self.shear, 0.0, 45.0, "degrees in [0, 45]"),
            "brightness": _number("brightness", self.brightness, 0.0, 1e3, "a number in [0, 1000]"),
            "contrast": _number("contrast", self.contrast, 0.0, 1e3, "a number in [0, 1000]"),
            "saturation": _number("saturation", self.saturation, 0.0, 1e3, "a number in [0, 1000]"),
            "hue": _number("hue", self.hue, 0.0, 0.5, "a number in [0, 0.5]"),
        }
        if self.padding not in PADDINGS:
            raise UserError(f"augmentation option padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> "AugmentConfig":
        """A config from ``{key: value}``; an optional ``"preset"`` key names the base the other keys override."""
        if not isinstance(options, Mapping):
            raise UserError(f"augmentation options must be a mapping of key to value, got {type(options).__name__}")
        options = dict(options)
        preset = options.pop("preset", "none")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(f"unknown augmentation option {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls.preset(preset, **options)

    @classmethod
    def preset(cls, name: str, **overrides) -> "AugmentConfig":
        """The named preset (:data:`PRESETS`) with ``overrides`` replacing its values."""
        if not isinstance(name, str) or name not in PRESETS:
            raise UserError(f"unknown augmentation preset {name!r} (known: {', '.join(PRESETS)})")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-serialisable (pairs as lists); ``from_dict`` reads it back to an equal config."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def crops(self) -> bool:
        return self.crop_scale != (1.0, 1.0) or self.crop_ratio != (1.0, 1.0)

    @property
    def warps(self) -> bool:
        """Whether a crop or affine transform is on (anything needing grid sampling)."""
        return self.crops or bool(self.rotation or self.translate or self.shear) or self.scale != (1.0, 1.0)

    @property
    def geometric(self) -> bool:
        return self.warps or bool(self.hflip or self.vflip)

    @property
    def colour(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation or self.hue)

    @property
    def is_identity(self) -> bool:
        return not (self.geometric or self.colour)


@dataclass
class AugmentParams:
    """The transforms drawn for one batch (per example; None = not applied).

    theta:  (B, 2, 3) sampling matrices in ``F.affine_grid``'s convention (output -> input, normalised
            coordinates, align_corners=False), flips included; None when there is no crop or affine.
    hflip, vflip: (B,) bool, used (as exact flips) only when theta is None.
    brightness, contrast, saturation, hue: (B,) factors (hue: shift in turns).
    """

    theta: Optional[torch.Tensor] = None
    hflip: Optional[torch.Tensor] = None
    vflip: Optional[torch.Tensor] = None
    brightness: Optional[torch.Tensor] = None
    contrast: Optional[torch.Tensor] = None
    saturation: Optional[torch.Tensor] = None
    hue: Optional[torch.Tensor] = None


def uniform(generator: torch.Generator, shape, device) -> torch.Tensor:
    """``torch.rand(shape)`` (float32) drawn on the generator's device, then moved to ``device``."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"augmentation needs a torch.Generator, got {type(generator).__name__}")
    return rand_like(torch.empty(shape, dtype=torch.float32, device=device), generator)


def _between(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


def sample_params(config: AugmentConfig, shape, generator: torch.Generator, device=None,
                  dtype: torch.dtype = torch.float32) -> AugmentParams:
    """Draw one batch's transforms for images of ``shape`` (B, C, H, W): ``torch.rand((B, NUM_DRAWS))`` from
    ``generator`` (nothing when ``config`` is the identity), row i for example i, columns as :data:`SLOTS`."""
    if config.is_identity:
        return AugmentParams()
    n, _, h, w = shape
    raw = uniform(generator, (n, NUM_DRAWS), device)
    u = raw.to(dtype)
    col = {name: u[:, i] for i, name in enumerate(SLOTS)}
    params = AugmentParams()
    if config.hflip:
        params.hflip = raw[:, SLOT["hflip"]] < config.hflip
    if config.vflip:
        params.vflip = raw[:, SLOT["vflip"]] < config.vflip
    if config.warps:
        params.theta = _theta(config, col, params.hflip, params.vflip, h, w)
    for name in ("brightness", "contrast", "saturation"):
        v = getattr(config, name)
        if v:
            setattr(params, name, _between(col[name], max(0.0, 1.0 - v), 1.0 + v))
    if config.hue:
        params.hue = _between(col["hue"], -config.hue, config.hue)
    return params


def _theta(config: AugmentConfig, col, hflip, vflip, h: int, w: int) -> torch.Tensor:
    """Sampling matrices (output -> input): flip, then inverse affine, then crop, in pixel units about the
    centre, converted to normalised coordinates."""
    u = col["hflip"]
    one, zero = torch.ones_like(u), torch.zeros_like(u)
    # crop: input = diag(cw, ch) @ p + (cx, cy)
    cw, ch, cx, cy = one, one, zero, zero
    if config.crops:
        area = _between(col["crop_area"], *config.crop_scale)
        ratio = torch.exp(_between(col["crop_ratio"], *(math.log(r) for r in config.crop_ratio)))
        cw = torch.sqrt(area * ratio * h / w).clamp(max=1.0)
        ch = torch.sqrt(area / ratio * w / h).clamp(max=1.0)
        cx = (2 * col["crop_x"] - 1) * (1 - cw) * (w / 2)
        cy = (2 * col["crop_y"] - 1) * (1 - ch) * (h / 2)
    # affine, forward p' = R(a) Sh(phi) s p + t; its inverse: p = (1/s) Sh(-phi) R(-a) (p' - t)
    a = torch.deg2rad((2 * col["rotation"] - 1) * config.rotation)
    k = torch.tan(torch.deg2rad((2 * col["shear"] - 1) * config.shear))
    s = _between(col["scale"], *config.scale)
    tx = (2 * col["translate_x"] - 1) * config.translate * w
    ty = (2 * col["translate_y"] - 1) * config.translate * h
    cos, sin = torch.cos(a), torch.sin(a)
    # Sh(-phi) R(-a) = [[1, -k], [0, 1]] @ [[cos, sin], [-sin, cos]]
    m00, m01 = (cos + k * sin) / s, (sin - k * cos) / s
    m10, m11 = -sin / s, cos / s
    off_x, off_y = -(m00 * tx + m01 * ty), -(m10 * tx + m11 * ty)
    # flips act on the output coordinates first
    fx = one if hflip is None else torch.where(hflip, -one, one)
    fy = one if vflip is None else torch.where(vflip, -one, one)
    l00, l01, l10, l11 = cw * m00 * fx, cw * m01 * fy, ch * m10 * fx, ch * m11 * fy
    t0, t1 = cw * off_x + cx, ch * off_y + cy
    # normalised n = p / (w/2, h/2): theta = D^-1 L D, D^-1 t
    row0 = torch.stack((l00, l01 * (h / w), t0 * (2 / w)), dim=1)
    row1 = torch.stack((l10 * (w / h), l11, t1 * (2 / h)), dim=1)
    return torch.stack((row0, row1), dim=1)


def apply_affine(x: torch.Tensor, mask: Optional[torch.Tensor], theta: torch.Tensor, padding: str = "border",
                 mode: str = "bilinear") -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Resample images x (B, C, H, W) and their mask with sampling matrices ``theta`` (B, 2, 3) (output ->
    input, as ``F.affine_grid``, align_corners=False): x with ``mode``, the mask with ``nearest`` on the
    same grid, both padded with ``padding``. The mask keeps its dtype; one shared over channels (stride 0,
    as ``Batch`` expands a (B, 1, H, W) mask) is sampled once."""
    if padding not in PADDINGS:
        raise UserError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)
    if mask is None:
        return out, None
    shared = mask.shape[1] > 1 and mask.stride(1) == 0
    source = mask[:, :1] if shared else mask
    moved = F.grid_sample(source.to(x.dtype), grid, mode="nearest", padding_mode=padding, align_corners=False)
    moved = moved > 0.5 if mask.dtype == torch.bool else moved.to(mask.dtype)
    return out, moved.expand(-1, mask.shape[1], -1, -1) if shared else moved


def _flip_where(t: torch.Tensor, which: Optional[torch.Tensor], dim: int) -> torch.Tensor:
    if which is None:
        return t
    return torch.where(which.to(t.device).view(-1, *([1] * (t.dim() - 1))), t.flip(dim), t)


def apply_geometry(x: torch.Tensor, mask: Optional[torch.Tensor], params: AugmentParams, padding: str = "border",
                   mode: str = "bilinear") -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The geometric part of ``params``: one :func:`apply_affine` when there is a theta, else exact flips."""
    if params.theta is not None:
        return apply_affine(x, mask, params.theta, padding, mode)
    for which, dim in ((params.hflip, -1), (params.vflip, -2)):
        x = _flip_where(x, which, dim)
        mask = None if mask is None else _flip_where(mask, which, dim)
    return x, mask


def _factor(value, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): luma of RGB, else the channel mean."""
    if x.shape[1] == 3:
        return (x * torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def shift_hue(x: torch.Tensor, shift) -> torch.Tensor:
    """RGB images (B, 3, H, W) in [0, 1] with the HSV hue turned by ``shift`` turns (saturation and value
    kept): channel n of (R, G, B) = v - c clamp(min(k, 4 - k), 0, 1), k = (n' + 6 h) mod 6, n' = 5, 3, 1,
    with v = max, c = max - min over channels and h the shifted hue."""
    r, g, b = x.unbind(1)
    v, low = x.amax(1), x.amin(1)
    c = v - low
    safe = torch.where(c > 0, c, torch.ones_like(c))
    h6 = torch.where(v == r, (g - b) / safe, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h6 = h6.unsqueeze(1) + 6 * _factor(shift, x)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(h6 + n, 6.0)
    return v.unsqueeze(1) - c.unsqueeze(1) * torch.minimum(k, 4 - k).clamp_(0.0, 1.0)


def adjust_colour(x: torch.Tensor, brightness=None, contrast=None, saturation=None, hue=None) -> torch.Tensor:
    """Colour jitter of images x (B, C, H, W) in [0, 1] with given factors (a number or one per example),
    in this order, each clamped to [0, 1]: brightness ``x b``; contrast ``c x + (1 - c) mean(gray(x))``;
    saturation ``s x + (1 - s) gray(x)`` (gray = ITU-R 601 luma); hue turned by ``hue`` turns in HSV
    (:func:`shift_hue`). Saturation and hue need RGB (C = 3). None skips a step; x is not modified."""
    if (saturation is not None or hue is not None) and x.shape[1] != 3:
        raise UserError(f"saturation and hue need RGB images (B, 3, H, W), got {tuple(x.shape)}")
    if brightness is not None:
        x = (x * _factor(brightness, x)).clamp_(0.0, 1.0)
    if contrast is not None:
        c = _factor(contrast, x)
        x = torch.addcmul((1 - c) * _gray(x).mean((1, 2, 3), keepdim=True), c, x).clamp_(0.0, 1.0)
    if saturation is not None:
        s = _factor(saturation, x)
        x = torch.addcmul((1 - s) * _gray(x), s, x).clamp_(0.0, 1.0)
    if hue is not None:
        x = shift_hue(x, hue).clamp_(0.0, 1.0)
    return x


class Augmentation:
    """A configured augmentation: ``Augmentation(config)(batch, generator, input_range) -> Batch``."""

    def __init__(self, config: AugmentConfig):
        self.config = config

    def __repr__(self) -> str:
        return f"Augmentation({self.config!r})"

    def to_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def check(self, batch: Batch, input_range) -> None:
        """One-line error unless ``batch`` can be augmented: images (B, C, H, W) for any transform, and
        ``input_range`` (0, 1) for colour jitter."""
        if self.config.is_identity:
            return
        if batch.x.dim() != 4:
            raise UserError(f"augmentation needs image batches (B, C, H, W), got {tuple(batch.x.shape)}")
        if self.config.colour and tuple(float(v) for v in input_range) != (0.0, 1.0):
            raise UserError(f"colour jitter (brightness, contrast, saturation, hue) needs inputs in [0, 1], got "
                            f"input_range {tuple(input_range)}; set those options to 0 for normalised data")

    def sample(self, batch: Batch, generator: torch.Generator) -> AugmentParams:
        """This batch's transforms (see :func:`sample_params`)."""
        dtype = batch.x.dtype if batch.x.is_floating_point() else torch.float32
        return sample_params(self.config, batch.x.shape, generator, batch.x.device, dtype)

    def apply(self, batch: Batch, params: AugmentParams) -> Batch:
        """``batch`` transformed by ``params``: geometry on x and mask, then colour on x; y, group,
        has_mask unchanged."""
        if self.config.is_identity:
            return batch
        x, mask = apply_geometry(batch.x, batch.mask, params, self.config.padding)
        if self.config.colour:
            rgb = x.shape[1] == 3
            x = adjust_colour(x, params.brightness, params.contrast, params.saturation if rgb else None,
                              params.hue if rgb else None)
        return Batch(x, batch.y, mask, batch.group, batch.has_mask)

    def augment(self, batch: Batch, generator: torch.Generator, input_range) -> Batch:
        """``batch`` with freshly drawn transforms; the identity config returns ``batch`` itself and draws nothing."""
        self.check(batch, input_range)
        if self.config.is_identity:
            return batch
        return self.apply(batch, self.sample(batch, generator))

    __call__ = augment


def create_augmentation(spec) -> Optional[Augmentation]:
    """An :class:`Augmentation` from None / ``"none"`` / a preset name / a dict (optional ``"preset"`` key
    plus overrides) / an :class:`AugmentConfig`; None when it would change nothing."""
    if spec is None:
        return None
    if isinstance(spec, AugmentConfig):
        config = spec
    elif isinstance(spec, str):
        config = AugmentConfig.preset(spec)
    elif isinstance(spec, Mapping):
        config = AugmentConfig.from_dict(spec)
    else:
        raise UserError(f"augmentation must be a preset name or a mapping of options, got {type(spec).__name__}")
    return None if config.is_identity else Augmentation(config)
