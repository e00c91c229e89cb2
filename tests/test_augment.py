"""Augmentation (data/augment.py): image and mask move together, seeded by the generator alone, validated config."""

from __future__ import annotations

import colorsys
import json
import math

import pytest
import torch
import torch.nn.functional as F

from rightreasons.batch import Batch
from rightreasons.data.augment import (
    NUM_DRAWS,
    PRESETS,
    SLOT,
    Augmentation,
    AugmentConfig,
    adjust_colour,
    apply_affine,
    apply_geometry,
    create_augmentation,
    shift_hue,
    uniform,
)
from rightreasons.errors import UserError

UNIT = (0.0, 1.0)
PATCH = torch.tensor([0.9, 0.8, 0.95], dtype=torch.float64)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def image_batch(n=6, c=3, h=12, w=16, seed=0, dtype=torch.float64, one_channel_mask=True) -> Batch:
    g = gen(seed)
    x = torch.rand(n, c, h, w, generator=g, dtype=dtype)
    mask = torch.rand(n, 1 if one_channel_mask else c, h, w, generator=g) < 0.2
    y = torch.randint(0, 3, (n,), generator=g)
    return Batch(x, y, mask, (y + 1) % 3, torch.arange(n) % 2 == 0)


def patch_batch(n=8, h=20, w=24, seed=0) -> Batch:
    """Dark noise in [0, 0.4] with one bright patch of colour PATCH per image (some touching an edge or a
    corner, as decoys do); mask = the patch."""
    g = gen(seed)
    x = 0.4 * torch.rand(n, 3, h, w, generator=g, dtype=torch.float64)
    mask = torch.zeros(n, 1, h, w, dtype=torch.bool)
    for i in range(n):
        ph, pw = (int(v) for v in torch.randint(3, 8, (2,), generator=g))
        top = 0 if i % 4 == 0 else int(torch.randint(0, h - ph + 1, (1,), generator=g))
        left = w - pw if i % 4 == 1 else int(torch.randint(0, w - pw + 1, (1,), generator=g))
        mask[i, 0, top:top + ph, left:left + pw] = True
    x = torch.where(mask, PATCH.view(1, 3, 1, 1), x)
    return Batch(x, torch.zeros(n, dtype=torch.long), mask)


def one_line_error(fn, *words):
    with pytest.raises(UserError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    return message


# identity


@pytest.mark.parametrize("spec", [None, "none", {}, {"preset": "none"}, AugmentConfig()])
def test_identity_spec_gives_no_augmentation(spec):
    assert create_augmentation(spec) is None


def test_identity_returns_the_batch_and_draws_nothing():
    batch = image_batch()
    g = gen(3)
    state = g.get_state().clone()
    out = Augmentation(AugmentConfig())(batch, g, UNIT)
    assert out is batch
    assert torch.equal(g.get_state(), state)
    flat = Batch(torch.rand(4, 784), torch.zeros(4, dtype=torch.long), torch.zeros(4, 784))
    assert Augmentation(AugmentConfig.preset("none"))(flat, g, (-5.0, 5.0)) is flat


# geometry


@pytest.mark.parametrize("key,dim", [("hflip", -1), ("vflip", -2)])
@pytest.mark.parametrize("one_channel_mask", [True, False])
def test_flip_with_probability_one_is_exact(key, dim, one_channel_mask):
    batch = image_batch(one_channel_mask=one_channel_mask)
    out = create_augmentation({key: 1.0})(batch, gen(), UNIT)
    assert torch.equal(out.x, batch.x.flip(dim))
    assert torch.equal(out.mask, batch.mask.flip(dim))
    assert out.mask.dtype == torch.bool


@pytest.mark.parametrize("key,dim", [("hflip", -1), ("vflip", -2)])
def test_flip_folded_into_the_affine_map_goes_the_same_way(key, dim):
    batch = image_batch(h=9, w=14)
    out = create_augmentation({key: 1.0, "translate": 1e-9})(batch, gen(), UNIT)  # one grid_sample, flip in theta
    assert torch.allclose(out.x, batch.x.flip(dim), atol=1e-6)
    assert torch.equal(out.mask, batch.mask.flip(dim))


def shifted(t: torch.Tensor, dy: int, dx: int, padding: str) -> torch.Tensor:
    """torch.roll by (dy, dx) with the wrapped-around rows/columns filled (edge copies or zeros)."""
    out = torch.roll(t, (dy, dx), (-2, -1)).clone()
    h, w = t.shape[-2:]
    cols = slice(0, dx) if dx >= 0 else slice(w + dx, w)
    rows = slice(0, dy) if dy >= 0 else slice(h + dy, h)
    if padding == "zeros":
        out[..., cols] = 0
        out[..., rows, :] = 0
    else:
        out[..., cols] = out[..., :, dx:dx + 1] if dx >= 0 else out[..., :, w + dx - 1:w + dx]
        out[..., rows, :] = out[..., dy:dy + 1, :] if dy >= 0 else out[..., h + dy - 1:h + dy, :]
    return out


@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize("dy,dx", [(0, 3), (2, -1), (-3, 2)])
def test_integer_translation_equals_roll_with_filled_border(padding, dy, dx):
    batch = image_batch(n=3, h=9, w=13)
    h, w = batch.x.shape[-2:]
    theta = torch.tensor([[1.0, 0.0, -2 * dx / w], [0.0, 1.0, -2 * dy / h]], dtype=torch.float64).expand(3, 2, 3)
    x, mask = apply_affine(batch.x, batch.mask, theta, padding)
    assert torch.allclose(x, shifted(batch.x, dy, dx, padding), atol=1e-12, rtol=0)
    assert torch.equal(mask, shifted(batch.mask, dy, dx, padding))


def test_rotation_is_a_rotation_in_pixels_on_non_square_images():
    batch = image_batch(n=32, h=10, w=30)
    aug = create_augmentation({"rotation": 30.0, "scale": [0.5, 2.0]})
    theta = aug.sample(batch, gen()).theta
    h, w = batch.x.shape[-2:]
    d = torch.diag(torch.tensor([w / 2, h / 2], dtype=torch.float64))
    pixel = d @ theta[:, :, :2] @ torch.linalg.inv(d)  # the linear part in pixel units
    scale = torch.linalg.det(pixel).sqrt()
    gram = pixel @ pixel.transpose(1, 2) / (scale ** 2).view(-1, 1, 1)
    assert torch.allclose(gram, torch.eye(2, dtype=torch.float64).expand(32, 2, 2), atol=1e-6)
    angles = torch.rad2deg(torch.atan2(pixel[:, 1, 0], pixel[:, 0, 0])).abs()
    assert float(angles.max()) <= 30.0 + 1e-6 and float(angles.max()) > 10.0
    assert 0.5 - 1e-6 <= float((1 / scale).min()) and float((1 / scale).max()) <= 2.0 + 1e-6


@pytest.mark.parametrize("preset", ["flip", "standard", "strong"])
@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_mask_stays_on_the_patch(preset, padding):
    """With the same transform applied to the image by nearest sampling, the image is patch-coloured exactly
    where the augmented mask is 1 (also where border padding smears an edge patch outwards). The bilinear
    image equals the patch colour (up to 1e-9) on the mask eroded by one pixel (the image's outer ring counts
    as unmasked): bilinear reads a 2x2 cell, nearest one pixel, so they can differ only along the patch
    border and, where padding enters, along the image edge."""
    batch = patch_batch()
    aug = create_augmentation({"preset": preset, "padding": padding})
    changed = 0
    for seed in range(12):
        params = aug.sample(batch, gen(seed))
        out = aug.apply(batch, params)
        assert out.mask.dtype == torch.bool and out.mask.shape == batch.x.shape
        nearest, _ = apply_geometry(batch.x, None, params, padding, mode="nearest")
        patch = (nearest == PATCH.view(1, 3, 1, 1)).all(1, keepdim=True).expand_as(nearest)
        assert torch.equal(patch, out.mask)
        bilinear, _ = apply_geometry(batch.x, None, params, padding)
        eroded = -F.max_pool2d(-F.pad(out.mask[:, :1].double(), (1, 1, 1, 1)), 3, stride=1) > 0.5  # outside = 0
        inner = eroded.expand_as(bilinear)
        err = (bilinear - PATCH.view(1, 3, 1, 1)).abs()[inner]
        assert err.numel() > 0 and float(err.max()) < 1e-9
        changed += not torch.equal(out.mask, batch.mask)
    assert changed >= 10


def test_outside_pixels_are_unmasked_with_zero_padding():
    x = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    theta = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]], dtype=torch.float64)  # zoom out 2x
    out, mask = apply_affine(x, torch.ones_like(x, dtype=torch.bool), theta, "zeros")
    assert torch.equal(mask, out > 0.5)
    assert 0 < int(mask.sum()) < 64
    _, mask_border = apply_affine(x, torch.ones_like(x, dtype=torch.bool), theta, "border")
    assert bool(mask_border.all())


def test_float_masks_stay_binary_and_float():
    batch = image_batch(dtype=torch.float32)
    batch = Batch(batch.x, batch.y, batch.mask.float(), batch.group, batch.has_mask)
    out = create_augmentation("strong")(batch, gen(), UNIT)
    assert out.mask.dtype == torch.float32
    assert bool(((out.mask == 0) | (out.mask == 1)).all())


# colour


def test_colour_jitter_keeps_mask_and_range():
    batch = image_batch()
    aug = create_augmentation({"brightness": 0.9, "contrast": 0.9, "saturation": 0.9, "hue": 0.5})
    out = aug(batch, gen(), UNIT)
    assert torch.equal(out.mask, batch.mask)
    assert float(out.x.min()) >= 0.0 and float(out.x.max()) <= 1.0
    assert not torch.allclose(out.x, batch.x, atol=1e-3)


def test_brightness_alone_is_a_clamped_product():
    x = image_batch().x
    assert torch.equal(adjust_colour(x, brightness=1.7), (x * 1.7).clamp(0, 1))
    factors = torch.tensor([0.5, 1.0, 1.2, 2.0, 0.0, 1.5], dtype=torch.float64)
    assert torch.equal(adjust_colour(x, brightness=factors), (x * factors.view(-1, 1, 1, 1)).clamp(0, 1))
    batch = image_batch()
    aug = create_augmentation({"brightness": 0.5})
    params = aug.sample(batch, gen(4))
    b = params.brightness
    assert float(b.min()) >= 0.5 and float(b.max()) <= 1.5 and float(b.std()) > 0
    assert torch.equal(aug.apply(batch, params).x, (batch.x * b.view(-1, 1, 1, 1)).clamp(0, 1))


def test_contrast_and_saturation_formulas():
    x = image_batch().x
    flat = adjust_colour(x, contrast=0.0)
    assert torch.allclose(flat, flat[:, :1, :1, :1].expand_as(flat), atol=1e-12)
    gray = adjust_colour(x, saturation=0.0)
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-12) and torch.allclose(gray[:, 1], gray[:, 2], atol=1e-12)
    assert torch.allclose(adjust_colour(x, contrast=1.0, saturation=1.0), x, atol=1e-12)


def reference_hue(x: torch.Tensor, shifts) -> torch.Tensor:
    """Hue turned pixel by pixel with the standard library's colorsys."""
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        for r in range(x.shape[2]):
            for c in range(x.shape[3]):
                h, s, v = colorsys.rgb_to_hsv(*x[i, :, r, c].tolist())
                out[i, :, r, c] = torch.tensor(colorsys.hsv_to_rgb((h + shifts[i]) % 1.0, s, v), dtype=x.dtype)
    return out


def test_hue_shift_matches_colorsys():
    x = image_batch(h=5, w=7).x
    x[0, :, 0, 0] = 0.3  # gray
    x[1, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # pure red
    x[1, :, 0, 1] = torch.tensor([0.2, 0.7, 0.7])  # max shared by two channels
    shifts = [0.0, 1 / 3, -0.2, 0.5, 0.05, 1.0]
    turned = adjust_colour(x, hue=torch.tensor(shifts, dtype=torch.float64))
    assert torch.allclose(turned, reference_hue(x, shifts), atol=1e-12)
    assert torch.allclose(shift_hue(x, 0.0), x, atol=1e-12)
    assert torch.allclose(shift_hue(x[1:2, :, :1, :1], 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1).double())


def test_grayscale_images_skip_saturation_and_hue():
    batch = image_batch(c=1)
    config = {"saturation": 0.9, "hue": 0.5}
    assert torch.equal(create_augmentation(config)(batch, gen(), UNIT).x, batch.x)
    out = create_augmentation({**config, "brightness": 0.5})(batch, gen(), UNIT)
    assert not torch.equal(out.x, batch.x)
    one_line_error(lambda: adjust_colour(batch.x, saturation=0.5), "RGB", "(6, 1, 12, 16)")


def test_colour_jitter_refuses_normalised_data():
    batch = image_batch()
    one_line_error(lambda: create_augmentation("standard")(batch, gen(), (-0.5, 2.5)), "input_range", "(-0.5, 2.5)")
    out = create_augmentation("flip")(batch, gen(), (-0.5, 2.5))  # geometry alone is fine
    assert out.x.shape == batch.x.shape


# randomness


@pytest.mark.parametrize("preset", ["standard", "strong"])
def test_same_seed_same_output_and_the_global_rng_is_irrelevant(preset):
    batch = image_batch(dtype=torch.float32)
    aug = create_augmentation(preset)
    torch.manual_seed(0)
    a = aug(batch, gen(7), UNIT)
    torch.manual_seed(123)
    torch.rand(5)
    b = aug(batch, gen(7), UNIT)
    c = aug(batch, gen(8), UNIT)
    assert torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.x, c.x)


def test_draws_are_one_row_per_example_in_slot_order():
    batch = image_batch(n=8)
    aug = create_augmentation({"preset": "standard", "vflip": 0.5})
    g = gen(5)
    params = aug.sample(batch, g)
    u = torch.rand(8, NUM_DRAWS, generator=gen(5))
    h = gen(5)
    torch.rand(8, NUM_DRAWS, generator=h)
    assert torch.equal(g.get_state(), h.get_state())  # one (B, NUM_DRAWS) draw, nothing else
    assert torch.equal(params.hflip, u[:, SLOT["hflip"]] < 0.5)
    assert torch.equal(params.vflip, u[:, SLOT["vflip"]] < 0.5)
    assert torch.allclose(params.brightness, 0.8 + 0.4 * u[:, SLOT["brightness"]].double())
    # the batch's result is its halves' results with the generator running on (row i = example i)
    whole = aug(batch, gen(5), UNIT)
    g = gen(5)
    halves = [aug(Batch(batch.x[s], batch.y[s], batch.mask[s]), g, UNIT) for s in (slice(0, 3), slice(3, 8))]
    assert torch.equal(whole.x, torch.cat([h.x for h in halves]))
    assert torch.equal(whole.mask, torch.cat([h.mask for h in halves]))


def test_enabling_a_transform_does_not_change_the_others_draws():
    batch = image_batch(n=16)
    base = create_augmentation("standard").sample(batch, gen(2))
    more = create_augmentation({"preset": "standard", "vflip": 0.5}).sample(batch, gen(2))
    same = ~more.vflip
    assert 0 < int(same.sum()) < 16
    assert torch.equal(base.theta[same], more.theta[same])
    assert torch.equal(base.brightness, more.brightness)


def test_uniform_is_drawn_on_the_generator_device():
    u = uniform(gen(1), (3, 4), "cpu")
    assert torch.equal(u, torch.rand(3, 4, generator=gen(1)))
    if torch.cuda.is_available():
        batch = image_batch(dtype=torch.float32)
        on_gpu = create_augmentation("strong")(batch.to("cuda"), gen(1), UNIT)
        on_cpu = create_augmentation("strong")(batch, gen(1), UNIT)
        assert torch.allclose(on_gpu.x.cpu(), on_cpu.x, atol=1e-4)


# configuration


def test_presets_and_overrides():
    assert set(PRESETS) == {"none", "flip", "standard", "strong"}
    assert AugmentConfig.preset("flip") == AugmentConfig(hflip=0.5)
    standard = AugmentConfig.preset("standard")
    assert (standard.crop_scale, standard.hflip, standard.rotation, standard.translate) == ((0.8, 1.0), 0.5, 10, 0.05)
    assert (standard.brightness, standard.contrast, standard.saturation, standard.vflip) == (0.2, 0.2, 0.0, 0.0)
    strong = AugmentConfig.preset("strong")
    assert (strong.crop_scale, strong.hflip, strong.vflip, strong.rotation, strong.translate, strong.shear) == (
        (0.5, 1.0), 0.5, 0.5, 20, 0.1, 5)
    assert (strong.brightness, strong.contrast, strong.saturation, strong.hue) == (0.4, 0.4, 0.4, 0.05)
    over = AugmentConfig.from_dict({"preset": "standard", "vflip": 0.5})
    assert over.vflip == 0.5 and over.rotation == 10 and over.crop_scale == (0.8, 1.0)


@pytest.mark.parametrize("name", list(PRESETS))
def test_to_dict_round_trips_through_json(name):
    config = AugmentConfig.from_dict({"preset": name, "padding": "zeros", "scale": [0.9, 1.1]})
    text = json.dumps(config.to_dict())
    assert AugmentConfig.from_dict(json.loads(text)) == config
    aug = create_augmentation(json.loads(text))
    assert aug.config == config and aug.to_dict() == config.to_dict()


@pytest.mark.parametrize("options,key", [
    ({"hflp": 0.5}, "hflp"),
    ({"hflip": -0.1}, "hflip"),
    ({"vflip": 1.5}, "vflip"),
    ({"hflip": True}, "hflip"),
    ({"crop_scale": [1.0, 0.8]}, "crop_scale"),
    ({"crop_scale": [0.0, 1.0]}, "crop_scale"),
    ({"crop_ratio": [1.0]}, "crop_ratio"),
    ({"scale": [1.2, 0.9]}, "scale"),
    ({"rotation": "10"}, "rotation"),
    ({"rotation": -5}, "rotation"),
    ({"translate": math.nan}, "translate"),
    ({"shear": 60}, "shear"),
    ({"brightness": math.inf}, "brightness"),
    ({"hue": 0.6}, "hue"),
    ({"padding": "wrap"}, "padding"),
    ({"preset": "heavy"}, "heavy"),
])
def test_bad_options_are_one_line_errors_naming_the_key(options, key):
    one_line_error(lambda: create_augmentation(options), key)


def test_bad_specs():
    one_line_error(lambda: create_augmentation("medium"), "medium", "standard")
    one_line_error(lambda: create_augmentation(0.5), "float")


def test_non_image_batch_is_a_one_line_error():
    flat = Batch(torch.rand(8, 784), torch.zeros(8, dtype=torch.long), torch.zeros(8, 784))
    one_line_error(lambda: create_augmentation("flip")(flat, gen(), UNIT), "(B, C, H, W)", "(8, 784)")


def test_unannotated_examples_keep_zero_masks_and_labels_pass_through():
    batch = image_batch(n=8)
    mask = batch.mask.clone()
    mask[~batch.has_mask] = False
    batch = Batch(batch.x, batch.y, mask, batch.group, batch.has_mask)
    for seed in range(5):
        out = create_augmentation("strong")(batch, gen(seed), UNIT)
        assert not bool(out.mask[~batch.has_mask].any())
        assert out.y is batch.y and out.group is batch.group and out.has_mask is batch.has_mask
