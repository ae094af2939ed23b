"""Latent dynamics on hand-made state sequences with known answers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from backend.dynamics import (around_events, backtrack_steps, distance_to_final, dynamics, event_window,
                              step_size, update_cosine)
from backend.errors import UsageError
from backend.metrics import analyze_trajectory
from helpers_trace import one_hot_path


def test_straight_line_at_constant_speed():
    # s_t = (10 + t, 0): steps of length 1 in one direction, ending at (15, 0)
    s = np.array([[10.0 + t, 0.0] for t in range(1, 6)])
    d = dynamics(s)
    assert np.isnan(d.step_size[0])
    np.testing.assert_allclose(d.step_size[1:], [1 / 12, 1 / 13, 1 / 14, 1 / 15])
    assert np.isnan(d.update_cos[:2]).all()
    np.testing.assert_allclose(d.update_cos[2:], 1.0)
    np.testing.assert_allclose(d.dist_final, [4 / 15, 3 / 15, 2 / 15, 1 / 15, 0.0])
    np.testing.assert_allclose(d.accel[1:], -1 / 15)


def test_turning_back_and_stopping():
    s = np.array([[1.0, 0], [2, 0], [1, 0], [1, 0], [1, 0]])  # forward, back, then still
    d = dynamics(s)
    np.testing.assert_allclose(d.step_size[1:], [0.5, 1.0, 0.0, 0.0])
    assert d.update_cos[2] == pytest.approx(-1.0)
    assert np.isnan(d.update_cos[3]) and np.isnan(d.update_cos[4])  # no motion: undefined, not 0
    np.testing.assert_allclose(d.dist_final, [0, 1, 0, 0, 0])
    np.testing.assert_allclose(d.accel[1:], [1, -1, 0, 0])


def test_right_angle_turn():
    s = np.array([[1.0, 0], [2, 0], [2, 1]])
    assert update_cosine(s)[2] == pytest.approx(0.0)
    assert step_size(s)[2] == pytest.approx(1 / np.sqrt(5))


def test_all_positions_and_mean():
    last = np.array([[10.0 + t, 0.0] for t in range(1, 6)])
    still = np.tile([[3.0, 4.0]], (5, 1))
    h = np.stack([still, last], axis=1)  # [K, S=2, E]
    d = dynamics(h)
    assert d.step_size.shape == (5, 2)
    np.testing.assert_allclose(d.step_size[1:, 0], 0.0)
    np.testing.assert_allclose(d.step_size[1:, 1], step_size(last)[1:])
    m = d.mean_over_positions()
    np.testing.assert_allclose(m.step_size[1:], (0 + step_size(last)[1:]) / 2)
    np.testing.assert_allclose(m.dist_final, distance_to_final(last) / 2)
    json.dumps(d.to_dict())  # NaN -> None, JSON-safe
    assert d.to_dict()["step_size"][0] == [None, None]


def test_bad_states_are_refused():
    with pytest.raises(UsageError):
        dynamics(np.zeros(5))
    with pytest.raises(UsageError):
        dynamics(np.array([[np.nan, 1.0]]))


def test_event_window_and_profile():
    np.testing.assert_array_equal(event_window([1, 2, 3, 4], 2, 2, 1), [np.nan, 1, 2, 3])
    series = [np.arange(1, 11, dtype=float), np.arange(1, 11, dtype=float) * 2]
    prof = around_events(series, [[5], [5, 9]], before=2, after=2, n_boot=200)
    # windows: [3,4,5,6,7], [6,8,10,12,14], [14,16,18,20,nan]
    np.testing.assert_allclose(prof.mean, [23 / 3, 28 / 3, 11, 38 / 3, 10.5])
    np.testing.assert_array_equal(prof.count, [3, 3, 3, 3, 2])
    assert prof.n_events == 3 and list(prof.offsets) == [-2, -1, 0, 1, 2]
    assert (prof.low <= prof.mean + 1e-12).all() and (prof.high >= prof.mean - 1e-12).all()
    assert (prof.high - prof.low > 0).all()
    empty = around_events(series, [[], []])
    assert empty.n_events == 0 and np.isnan(empty.mean).all()
    json.dumps(prof.to_dict())


def test_backtrack_steps_from_metrics():
    m = analyze_trajectory(one_hot_path([0] * 4 + [1] * 3 + [2] * 5))
    assert backtrack_steps(m) == [5, 8]
    assert backtrack_steps(analyze_trajectory(one_hot_path([0] * 8))) == []
