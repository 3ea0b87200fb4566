"""The report's statistics on known inputs: bootstrap intervals on known distributions (width,
coverage), paired differences, and the per-clip curve summaries."""

import numpy as np
import pytest

from autogaze_jax.train import clip_stats


def test_bootstrap_interval_of_a_normal_mean_has_the_textbook_width():
  x = np.random.default_rng(0).normal(3.0, 2.0, 400)
  lo, hi = clip_stats.bootstrap_interval(x)
  assert lo < x.mean() < hi
  assert hi - lo == pytest.approx(2 * 1.96 * 2.0 / np.sqrt(400), rel=0.15)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
  rng = np.random.default_rng(1)
  hits = 0
  for i in range(200):  # exponential(1): skewed, true mean 1
    lo, hi = clip_stats.bootstrap_interval(rng.exponential(1.0, 60), resamples=1000, seed=i)
    hits += lo <= 1.0 <= hi
  assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_interval_of_the_median_and_bad_arguments():
  x = np.random.default_rng(2).uniform(0, 1, 500)
  lo, hi = clip_stats.bootstrap_interval(x, stat=np.median)
  assert lo < 0.5 < hi and hi - lo < 0.12
  with pytest.raises(ValueError, match="no values"):
    clip_stats.bootstrap_interval([])
  with pytest.raises(ValueError, match="level"):
    clip_stats.bootstrap_interval(x, level=95)


def test_paired_difference_sees_a_small_shift_that_unpaired_noise_would_hide():
  rng = np.random.default_rng(3)
  base = rng.uniform(0.1, 0.9, 50)  # clips differ a lot; the policies differ by 0.02 on each
  out = clip_stats.paired_difference(base, base + 0.02 + rng.normal(0, 0.005, 50))
  assert out["mean"] == pytest.approx(-0.02, abs=0.003) and out["excludes_0"] and out["ci95"][1] < 0
  same = clip_stats.paired_difference(base, base + rng.normal(0, 0.01, 50))
  assert not same["excludes_0"]
  with pytest.raises(ValueError, match="pair them"):
    clip_stats.paired_difference(base, base[:10])


def test_curve_summaries_on_a_hand_computed_clip():
  ratios = [0.1, 0.2, 0.4]
  loss = np.array([[0.9, 0.7, 0.5],    # crosses 0.6 halfway between 0.2 and 0.4
                   [0.5, 0.4, 0.3],    # already below at the first budget
                   [0.9, 0.8, 0.7]])   # never reaches
  np.testing.assert_allclose(clip_stats.ratio_at_eps(loss, ratios, 0.6), [0.3, 0.1, 1.0])
  # mean over [0.1, 0.4]: (0.1 * 0.8 + 0.2 * 0.6) / 0.3
  assert clip_stats.area_under_curve(loss, ratios)[0] == pytest.approx((0.08 + 0.12) / 0.3)
  np.testing.assert_allclose(clip_stats.loss_at(loss, ratios, 0.3), [0.6, 0.35, 0.75])
  row = clip_stats.summarize(loss, ratios, 0.6, fixed_ratios=(0.3,))
  assert row["ratio_at_eps"] == pytest.approx(1.4 / 3) and row["ratio_at_eps_median"] == pytest.approx(0.3)
  assert row["reach_fraction"] == pytest.approx(2 / 3) and row["loss_at_0.3"] == pytest.approx(1.7 / 3)
  lo, hi = row["ratio_at_eps_ci95"]
  assert 0.1 <= lo <= row["ratio_at_eps"] <= hi <= 1.0
  assert row["per_clip_ratio"] == pytest.approx([0.3, 0.1, 1.0])


def test_area_under_curve_stops_at_its_ratio_cap_but_keeps_two_points():
  loss = np.array([[0.9, 0.7, 0.5, 0.1]])
  assert clip_stats.area_under_curve(loss, [0.1, 0.2, 0.3, 1.0], 0.3)[0] == pytest.approx(0.7)
  assert clip_stats.area_under_curve(loss, [0.25, 0.5, 0.75, 1.0], 0.3)[0] == pytest.approx(0.8)
  with pytest.raises(ValueError, match="two points"):
    clip_stats.area_under_curve(loss[:, :1], [0.1])
