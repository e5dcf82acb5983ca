"""The learning-rate schedules: one warm-up, three decays, by hand values."""

from __future__ import annotations

import doctest
import math

import pytest

import personakit.training.schedules as schedules_mod
from personakit.training.schedules import (
    cosine_schedule,
    linear_decay_schedule,
    linear_warmup_decay_schedule,
    warmup_factor,
    warmup_steps_from_ratio,
)


def test_one_warmup_for_every_schedule():
    want = [1 / 4, 2 / 4, 3 / 4]  # (s + 1) / (w + 1), w = 3
    assert [warmup_factor(s, 3) for s in range(3)] == want and warmup_factor(3, 3) == 1.0
    assert warmup_factor(0, 0) == 1.0
    for schedule in (linear_decay_schedule(10, 0.5, 3), linear_warmup_decay_schedule(10, 3), cosine_schedule(10, 3)):
        assert [schedule(s) for s in range(3)] == want
        assert schedule(3) == 1.0  # the peak right after the warm-up


def test_linear_decay_to_a_final_fraction_at_the_final_step():
    fn = linear_decay_schedule(5, 0.5)
    assert [fn(s) for s in range(5)] == [1.0, 0.875, 0.75, 0.625, 0.5]  # GRAG: 50% at the final step
    assert fn(9) == 0.5
    warm = linear_decay_schedule(6, 0.5, warmup_steps=2)
    assert [warm(s) for s in range(6)] == pytest.approx([1 / 3, 2 / 3, 1.0, 5 / 6, 2 / 3, 0.5])
    assert linear_decay_schedule(1, 0.5)(0) == 1.0
    with pytest.raises(ValueError, match="final_fraction"):
        linear_decay_schedule(3, 1.5)


def test_linear_decay_towards_zero_after_the_final_step():
    fn = linear_warmup_decay_schedule(10, 2)  # ROPG / RSPG: 10 steps, 2 of warm-up
    assert [fn(s) for s in range(10)] == pytest.approx([1 / 3, 2 / 3] + [(10 - s) / 8 for s in range(2, 10)])
    assert fn(10) == 0.0 and fn(12) == 0.0


def test_cosine_decay():
    fn = cosine_schedule(6, 2)
    assert [fn(s) for s in range(6)] == pytest.approx(
        [1 / 3, 2 / 3] + [0.5 * (1 + math.cos(math.pi * p / 4)) for p in range(4)])
    assert cosine_schedule(4, 0)(4) == pytest.approx(0.0)


def test_warmup_steps_from_ratio_and_errors():
    assert warmup_steps_from_ratio(0.05, 100) == 5 and warmup_steps_from_ratio(0.05, 30) == 1  # floor
    assert warmup_steps_from_ratio(0.0, 7) == 0
    with pytest.raises(ValueError, match="ratio"):
        warmup_steps_from_ratio(1.5, 10)
    for make in (lambda: cosine_schedule(0), lambda: linear_warmup_decay_schedule(3, -1),
                 lambda: linear_decay_schedule(0)):
        with pytest.raises(ValueError, match="steps"):
            make()


def test_doctests():
    assert doctest.testmod(schedules_mod).failed == 0
