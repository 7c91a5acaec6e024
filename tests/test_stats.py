import numpy as np
import pytest

from uegr.stats import paired_bootstrap, wilson_interval


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson_interval(0, 10)  # p ± z·se would give [0, 0]; Wilson keeps an upper bound
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)


@pytest.mark.parametrize("k,n,word", [(1, 0, "n must be positive"), (11, 10, "k=11")])
def test_wilson_interval_names_the_bad_count(k, n, word):
    with pytest.raises(ValueError, match=word):
        wilson_interval(k, n)


def test_paired_bootstrap_of_a_constant_shift_is_exact_however_noisy_the_items():
    b = np.random.default_rng(1).random(400)
    diff, lo, hi = paired_bootstrap(b + 0.1, b)
    assert diff == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_paired_bootstrap_refuses_unpaired_inputs():
    with pytest.raises(ValueError, match="pair the same items"):
        paired_bootstrap([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="no items"):
        paired_bootstrap([], [])


def test_paired_bootstrap_interval_covers_the_true_difference_about_95_percent_of_the_time():
    # Two models attacked on the same sentences. As in real attacks, most sentences break for every
    # model and some survive for every model; model A survives each with probability 0.05 more.
    rng = np.random.default_rng(0)
    covered, widths = 0, []
    for rep in range(120):
        difficulty = rng.choice([0.0, 0.85], p=[0.75, 0.25], size=300)
        a = (rng.random(300) < difficulty + 0.05).astype(float)
        b = (rng.random(300) < difficulty).astype(float)
        diff, lo, hi = paired_bootstrap(a, b, resamples=1000, seed=rep)
        assert lo <= diff <= hi
        covered += lo <= 0.05 <= hi
        widths.append(hi - lo)
    assert 0.88 <= covered / 120 <= 1.0
    # and far sharper than an interval that treats the two models' results as independent samples
    pa, pb = 0.25 * 0.9 + 0.75 * 0.05, 0.25 * 0.85
    unpaired_width = 2 * 1.96 * np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / 300)
    assert np.mean(widths) < 0.6 * unpaired_width
