"""Schedules: warm-up, linear ramp, end value, per-step fractions, and state that round-trips."""

import pytest

from rightreasons import UserError
from rightreasons.ops.schedules import Constant, LinearRamp, ce_weight_schedule, eps_ramp


def test_linear_ramp_warmup_ramp_and_end():
    s = LinearRamp(0.0, 2.0, warmup_epochs=1, ramp_epochs=4)
    values = [s.value(e) for e in range(8)]
    assert values[:2] == [0.0, 0.0]
    assert values[2] == pytest.approx(0.5) and values[3] == pytest.approx(1.0) and values[4] == pytest.approx(1.5)
    assert values[5:] == [2.0, 2.0, 2.0]  # exactly the end value, not a rounding of it
    assert values == sorted(values)


def test_fraction_makes_the_ramp_smooth_within_an_epoch():
    s = LinearRamp(1.0, 0.5, warmup_epochs=0, ramp_epochs=2)
    assert s.value(0, 0.5) == pytest.approx(0.875)
    assert s.value(1, 0.0) == pytest.approx(0.75)
    assert s.value(0, 0.0) == 1.0
    assert s.value(1, 0.99) > 0.5
    with pytest.raises(ValueError, match="fraction"):
        s.value(0, 1.5)


def test_zero_length_ramp_jumps_after_the_warmup():
    s = eps_ramp(3.0, warmup_epochs=2, ramp_epochs=0)
    assert [s.value(e) for e in range(4)] == [0.0, 0.0, 3.0, 3.0]
    assert [eps_ramp(3.0).value(e) for e in range(2)] == [3.0, 3.0]


def test_ce_weight_goes_from_one_to_kappa_end():
    k = ce_weight_schedule(0.5, warmup_epochs=1, ramp_epochs=2)
    assert k.value(0) == 1.0 and k.value(1) == 1.0 and k.value(2) == pytest.approx(0.75) and k.value(3) == 0.5
    with pytest.raises(UserError, match="kappa_end"):
        ce_weight_schedule(1.5)
    with pytest.raises(UserError, match="warmup_epochs"):
        LinearRamp(0, 1, warmup_epochs=-1)


def test_state_round_trips_and_current_follows_set_epoch():
    a = eps_ramp(1.0, 1, 3)
    a.set_epoch(3)
    b = eps_ramp(1.0, 1, 3)
    assert b.current() == 0.0
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict() == {"epoch": 3}
    assert b.current() == a.current() == pytest.approx(2 / 3)
    with pytest.raises(UserError, match="epoch"):
        b.load_state_dict({"epoch": 1, "bogus": 2})
    with pytest.raises(ValueError, match="epoch"):
        b.set_epoch(-1)
    c = Constant(0.3)
    c.set_epoch(5)
    assert c.current() == 0.3 and c.state_dict() == {"epoch": 5}
