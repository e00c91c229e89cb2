"""Perturbed inputs are clamped to the training data's value range unless told otherwise: a
``clip_min`` / ``clip_max`` of None means ``StepContext.input_range``, which the trainer fills from the
training set's ``input_range`` (normalised folders and tables are not in [0, 1])."""

import pytest
import torch

from helpers import tiny_batch, tiny_mlp
from rightreasons import TrainConfig, UserError, create_method, fit
from rightreasons.data.dataset import ExplanationDataset
from rightreasons.methods import StepContext
from rightreasons.methods.base import clip_range
from rightreasons.methods.erm import ERM

LATE = 20
CLIPPED = ["pgd_ex", "ibp_ex+rrr", "ig_norm", "ig_sum_norm"]  # pgd_ex+rrr: unclipped, as in Heo et al.'s code
# radii large enough that the clamp binds on [0, 1] inputs; IG methods perturb everywhere
WIDE = {"pgd_ex": {"eps": 2.0, "steps": 3}, "pgd_ex+rrr": {"eps": 2.0, "steps": 3}, "ibp_ex+rrr": {"eps": 2.0},
        "ig_norm": {"eps": 2.0}, "ig_sum_norm": {"eps": 2.0}}


def ctx(input_range=(0.0, 1.0)):
    return StepContext(epoch=LATE, num_epochs=LATE + 1, generator=torch.Generator().manual_seed(0),
                       input_range=input_range)


def term(name, input_range=(0.0, 1.0), **params):
    method = create_method(name, **{**WIDE[name], **params})
    method.start_epoch(LATE, LATE + 1)
    model = tiny_mlp(dtype=torch.float64)
    out = method.loss(model, tiny_batch(dtype=torch.float64), ctx(input_range))
    return out.loss.item()


@pytest.mark.parametrize("name", CLIPPED)
def test_default_clip_is_the_data_range(name):
    assert create_method(name).params["clip_min"] is None and create_method(name).params["clip_max"] is None
    for low, high in ((0.0, 1.0), (-2.0, 3.0)):
        default = term(name, (low, high))
        explicit = term(name, (0.0, 1.0), clip_min=low, clip_max=high)  # explicit ends ignore the context
        assert default == explicit, (low, high)
    assert term(name, (0.0, 1.0)) != term(name, (-2.0, 3.0))  # the range matters at this radius


def test_pgd_ex_rrr_is_unclipped_by_default_and_takes_the_data_range_when_told_none():
    method = create_method("pgd_ex+rrr")
    assert clip_range(method, ctx((0.0, 1.0))) is None
    assert term("pgd_ex+rrr", (0.0, 1.0)) == term("pgd_ex+rrr", (0.0, 1.0), clip_min="-inf", clip_max="inf")
    data_range = {"clip_min": "none", "clip_max": "none"}
    assert term("pgd_ex+rrr", (0.0, 1.0), **data_range) == term("pgd_ex+rrr", (0.0, 1.0), clip_min=0.0, clip_max=1.0)
    assert term("pgd_ex+rrr", (0.0, 1.0), **data_range) != term("pgd_ex+rrr", (0.0, 1.0))


def test_infinite_ends_mean_no_clamp_and_ibp_ex_stays_unclipped_by_default():
    assert term("pgd_ex", (0.0, 1.0), clip_min="-inf", clip_max="inf") == term("pgd_ex", (-1e9, 1e9))
    method = create_method("ibp_ex")
    assert clip_range(method, ctx()) is None
    assert clip_range(create_method("ibp_ex", clip_min="none", clip_max="none"), ctx((-1.0, 2.0))) == (-1.0, 2.0)


def test_one_end_may_come_from_the_data():
    method = create_method("pgd_ex", clip_min=-0.5)
    assert clip_range(method, ctx((0.0, 4.0))) == (-0.5, 4.0)
    with pytest.raises(UserError, match="clip_min=5.0 must be <= clip_max=4.0"):
        clip_range(create_method("pgd_ex", clip_min=5.0), ctx((0.0, 4.0)))
    with pytest.raises(UserError, match="clip_min"):
        create_method("pgd_ex", clip_min=2.0, clip_max=1.0)
    with pytest.raises(UserError, match=r"^method 'pgd_ex\+rrr': clip_min=2.0 must be <= clip_max=1.0$"):
        create_method("pgd_ex+rrr", clip_min=2.0, clip_max=1.0)  # the name the user gave, not the part's


@pytest.mark.parametrize("value", ["none", "None", "null", None])
def test_optional_parameters_take_none(value):
    assert create_method("pgd_ex", clip_max=value).params["clip_max"] is None
    assert create_method("ibp_ex+rrr", clip_min=value).members[0].clip_min is None


@pytest.mark.parametrize("value", ["abc", "nan", True, [1.0]])
def test_optional_floats_refuse_non_numbers(value):
    with pytest.raises(UserError, match="'clip_min' must be a number or none"):
        create_method("pgd_ex", clip_min=value)


class BoundedOptional(ERM):
    name = "bounded_optional"
    defaults = {"radius": None, "scale": 1.0}
    bounds = {"radius": (0.0, 2.0), "scale": (0.0, None)}
    optional = frozenset({"scale"})


def test_bounds_apply_to_optional_parameters_only_when_they_are_given():
    assert BoundedOptional().params == {"radius": None, "scale": 1.0}
    assert BoundedOptional(radius="none", scale="none").params == {"radius": None, "scale": None}
    assert BoundedOptional(radius=1.5).params["radius"] == 1.5
    for params, field in (({"radius": 3.0}, "radius=3.0"), ({"radius": -1.0}, "radius=-1.0"),
                          ({"scale": -1.0}, "scale=-1.0")):
        with pytest.raises(UserError, match=f"{field} is outside"):
            BoundedOptional(**params)


def test_non_optional_floats_refuse_none():
    with pytest.raises(UserError, match="'eps' must be float"):
        create_method("pgd_ex", eps="none")
    assert create_method("pgd_ex", clip_min="0.25").params["clip_min"] == 0.25


class RangeRecorder(ERM):
    """ERM that remembers the input range each step was told."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def loss(self, model, batch, ctx):
        self.seen.add(ctx.input_range)
        return super().loss(model, batch, ctx)


def test_trainer_passes_the_training_sets_range():
    x = torch.rand(40, 1, 6, 6) * 6 - 3
    data = ExplanationDataset(x, torch.arange(40) % 3, num_classes=3, input_range=(-3.0, 3.0))
    method = RangeRecorder()
    fit(tiny_mlp(), method, data, TrainConfig(epochs=1, batch_size=16, select="last", threads=1))
    assert method.seen == {(-3.0, 3.0)}
