"""Metrics against sklearn and hand values; the SN72 reward against hand-computed streams."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from roadwork.metrics import (RewardSimulator, _sklearn_window_metrics, _validator_window_metrics, binary_metrics,
                              expected_calibration_error, hard_labels, simulate_reward, validator_stream)


# ---- plain metrics ------------------------------------------------------------------------------
def test_hard_labels_round_half_to_even():
    assert hard_labels([0.0, 0.4999, 0.5, 0.5001, 1.0]).tolist() == [0, 0, 0, 1, 1]


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.35 * y + rng.random(300) * 0.65, 0, 1)
    p[:5] = 0.5  # exact halves count as "none", like the validator
    m = binary_metrics(y, p)
    pred = np.round(p)
    assert m["n"] == 300 and m["positives"] == int(y.sum())
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred), abs=1e-12)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert m["confusion"] == skm.confusion_matrix(y, pred, labels=[0, 1]).tolist()
    assert 0.0 < m["mcc"] < 1.0


def test_binary_metrics_one_class_and_empty():
    m = binary_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert math.isnan(m["auc"])  # undefined, not 0 or 0.5
    assert m["accuracy"] == pytest.approx(2 / 3) and m["mcc"] == 0.0 and m["recall"] == pytest.approx(2 / 3)
    assert m["confusion"] == [[0, 0], [1, 2]]
    e = binary_metrics([], [])
    assert e["n"] == 0 and math.isnan(e["accuracy"]) and math.isnan(e["ece"])
    assert binary_metrics([0, 0], [0.1, 0.2])["precision"] == 0.0  # zero_division=0


def test_ece_perfectly_calibrated_toy_is_zero():
    # In each bin every prediction equals the observed positive rate of that bin.
    probs = np.repeat([0.1, 0.3, 0.7, 0.9], 10)
    labels = np.concatenate([[1] * 1 + [0] * 9, [1] * 3 + [0] * 7, [1] * 7 + [0] * 3, [1] * 9 + [0] * 1])
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_values():
    # bin 0: p=0.05, half positive -> |0.5-0.05| * 2/4; bin 14: p=0.95, all positive -> |1-0.95| * 2/4
    assert expected_calibration_error([0, 1, 1, 1], [0.05, 0.05, 0.95, 0.95]) == pytest.approx(0.25)
    assert expected_calibration_error([0, 1] * 50, [0.9] * 100) == pytest.approx(0.4)
    # p = 1.0 belongs to the top bin, p = 1/15 to bin 1 (its left edge)
    assert expected_calibration_error([1, 0], [1.0, 1 / 15]) == pytest.approx((0 + 1 / 15) / 2)


# ---- the reward ---------------------------------------------------------------------------------
def test_reward_hand_computed_stream():
    sim = RewardSimulator()
    # 1: labels so far {1} -> MCC gated to 0; acc(last 10) = 1 -> (0.5)^3
    assert sim.step(0.9, 1) == pytest.approx(0.125)
    assert sim.score == pytest.approx(0.05 * 0.125)
    # 2: both classes, both right -> MCC 1, acc 1
    assert sim.step(0.2, 0) == pytest.approx(1.0)
    assert sim.score == pytest.approx(0.05 * 1.0 + 0.95 * 0.05 * 0.125)
    # 3: 0.5 rounds to 0 (wrong): tp=1 tn=1 fn=1 fp=0 -> MCC 1/sqrt(1*2*1*2) = 0.5, acc 2/3
    assert sim.step(0.5, 1) == pytest.approx((0.5 * 0.5 + 0.5 * 2 / 3) ** 3)
    # 4: a -1 answer (timeout) earns 0 ...
    assert sim.step(-1, 0) == 0.0
    # 5: ... and is dropped from later windows: y=[1,0,1,1], p=[1,0,0,1] -> tp2 tn1 fn1 fp0
    mcc = (2 * 1 - 0) / math.sqrt((2 + 0) * (2 + 1) * (1 + 0) * (1 + 1))
    assert sim.step(0.8, 1) == pytest.approx((0.5 * mcc + 0.5 * 3 / 4) ** 3)


def test_reward_always_one_class_is_capped_at_0125():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    out = simulate_reward(np.full(400, 0.97), labels)
    r = out["rewards"]
    assert r.max() == pytest.approx(0.125)  # MCC is 0 with one predicted class: (0.5 * 1) ** 3 at best
    # the cap is reached exactly where the last (up to) 10 labels were all 1
    streak = np.array([labels[max(0, i - 9):i + 1].all() for i in range(400)])
    assert streak.any()
    np.testing.assert_allclose(r[streak], 0.125)
    assert np.all(r[~streak] < 0.125)
    # and in general reward = (0.5 * acc10) ** 3
    acc10 = np.array([labels[max(0, i - 9):i + 1].mean() for i in range(400)])
    np.testing.assert_allclose(r, (0.5 * acc10) ** 3)


def test_reward_out_of_range_answer():
    # warm up with 20 perfect answers, then one answer of 1.2: 0 that round (compute_penalty) ...
    y = [1, 0] * 10
    p = [0.9, 0.1] * 10
    sim = RewardSimulator()
    assert [sim.step(a, b) for a, b in zip(p, y)][-1] == pytest.approx(1.0)
    assert sim.step(1.2, 1) == 0.0
    # ... but 1.2 rounds to 1 (right), so the next round is perfect again
    assert sim.step(0.1, 0) == pytest.approx(1.0)


def test_reward_value_rounding_to_two_poisons_windows():
    # 1.5 rounds to 2.0: sklearn sees a multiclass target and raises, the validator falls back to
    # all-zero metrics for every window holding it: accuracy for 10 rounds, MCC for 100.
    sim = RewardSimulator()
    for a, b in zip([0.9, 0.1] * 10, [1, 0] * 10):
        sim.step(a, b)
    assert sim.step(1.5, 1) == 0.0
    after = [sim.step(a, b) for a, b in zip([0.9, 0.1] * 60, [1, 0] * 60)]
    assert after[:9] == [0.0] * 9  # the 1.5 is still in the last-10 window
    np.testing.assert_allclose(after[9:99], 0.125)  # acc 1, MCC window still poisoned
    np.testing.assert_allclose(after[99:], 1.0)  # it left the 100-answer history


def test_reward_nan_answer_zeroes_windows_like_the_validator():
    sim = RewardSimulator()
    for a, b in zip([0.9, 0.1] * 10, [1, 0] * 10):
        sim.step(a, b)
    assert sim.step(float("nan"), 1) == 0.0  # passes compute_penalty, but sklearn raises on NaN
    after = [sim.step(a, b) for a, b in zip([0.9, 0.1] * 60, [1, 0] * 60)]
    assert after[:9] == [0.0] * 9 and after[9] == pytest.approx(0.125) and after[99] == pytest.approx(1.0)


def test_reward_minus_one_answers_shrink_the_windows():
    sim = RewardSimulator()
    sim.step(0.9, 1)
    sim.step(0.1, 0)
    for _ in range(9):
        assert sim.step(-1, 1) == 0.0
    # last 10 = nine -1 and this one: accuracy over 1 kept answer (wrong) = 0; MCC over 3 kept
    y, p = [1, 0, 1], [1, 0, 0]
    mcc = skm.matthews_corrcoef(y, p)
    assert sim.step(0.2, 1) == pytest.approx((0.5 * mcc + 0.5 * 0.0) ** 3)
    assert len(sim.preds) == 12


def test_history_keeps_only_last_100():
    sim = RewardSimulator()
    for _ in range(100):
        sim.step(0.9, 0)  # 100 wrong answers
    for _ in range(100):
        sim.step(0.1, 0)  # 100 right answers, one class only
    assert len(sim.preds) == 100 and sim.step(0.9, 1) == pytest.approx((0.5 * 1.0 + 0.5 * 1.0) ** 3)


def test_fast_window_metrics_equal_the_sklearn_path():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 101))
        p = rng.random(n)
        p[rng.random(n) < 0.2] = 0.5
        p[rng.random(n) < 0.1] = -1
        y = rng.integers(0, 2, n)
        keep = p != -1
        fast = _validator_window_metrics(p.tolist(), y.tolist())
        if keep.any():
            slow = _sklearn_window_metrics(p[keep], y[keep])
            assert fast == pytest.approx(slow, abs=1e-12)


def test_ema_score_and_simulate_reward():
    out = simulate_reward([0.9, 0.1, 0.9, 0.1], [1, 0, 1, 0])
    np.testing.assert_allclose(out["rewards"], [0.125, 1, 1, 1])
    s = 0.0
    for r in out["rewards"]:
        s = 0.05 * r + 0.95 * s
    assert out["final_score"] == pytest.approx(s)
    assert out["mean_reward"] == pytest.approx(3.125 / 4)
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        simulate_reward([0.1, 0.2, 0.3], [0, 1])


def test_validator_stream_is_balanced_and_seeded():
    labels = np.array([1] * 10 + [0] * 90)
    a = validator_stream(labels, 4000, np.random.default_rng(5))
    b = validator_stream(labels, 4000, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert abs(labels[a].mean() - 0.5) < 0.03
    assert sorted(validator_stream(np.zeros(7, int), 7, np.random.default_rng(0))) == list(range(7))
