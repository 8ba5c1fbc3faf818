"""Step curves thinned for the browser keep their ends and their spikes (tl_core.downsample)."""

import numpy as np
import pandas as pd
import pytest

from tl_core import charts
from tl_core.downsample import MAX_POINTS, minmax_downsample, minmax_indices


def noisy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(-np.arange(n) / (n / 3)) + 0.05 * rng.standard_normal(n)


@pytest.mark.parametrize("n", [1, 2, 999, 1000])
def test_short_lines_are_left_whole(n: int) -> None:
    assert minmax_indices(noisy(n)).tolist() == list(range(n))


@pytest.mark.parametrize("n,most", [(1001, 1000), (5000, 1000), (123_457, 1000), (50, 4), (10_000, 37)])
def test_at_most_n_points_increasing_with_both_ends(n: int, most: int) -> None:
    idx = minmax_indices(noisy(n), most)
    assert 0 < len(idx) <= most
    assert idx[0] == 0 and idx[-1] == n - 1
    assert (np.diff(idx) > 0).all()


def test_every_bucket_keeps_its_extremes() -> None:
    y = noisy(20_000, seed=3)
    y[7_777] = 40.0   # a loss spike between two stride-kept points
    y[12_345] = -9.0  # and a dip
    idx = minmax_indices(y, 1000)
    assert 7_777 in idx and 12_345 in idx
    kept = y[idx]
    assert kept.max() == y.max() and kept.min() == y.min()
    # a stride of 20 (what every-k-th thinning would keep) misses both
    assert 7_777 % 20 and 12_345 % 20


def test_nan_is_not_chosen_over_numbers() -> None:
    y = noisy(3000)
    y[100:400] = np.nan
    idx = minmax_indices(y, 100)  # buckets of about 61 points: about 5 of them wholly NaN
    gaps = idx[np.isnan(y[idx])]
    assert ((gaps >= 100) & (gaps < 400)).all()
    assert len(gaps) <= 300 // 61 + 1  # one placeholder per all-NaN bucket, a number from every other bucket


def test_too_few_points_asked_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        minmax_indices(noisy(100), 3)


def test_x_follows_y() -> None:
    x = np.arange(5000) * 10
    y = noisy(5000)
    xs, ys = minmax_downsample(x, y, 200)
    assert len(xs) == len(ys) <= 200
    assert np.array_equal(ys, y[xs // 10])


def test_loss_chart_sends_at_most_max_points_per_line_and_keeps_a_spike() -> None:
    n = 30_000
    loss = noisy(n) + 1.0
    loss[21_001] = 25.0
    steps = pd.DataFrame({"step": np.arange(1, n + 1), "epoch": 1, "loss_task": loss})
    fig = charts.loss_figure([charts.Series("run", steps, pd.DataFrame(), "#000")])
    traces = fig.to_dict()["data"]
    raw, smoothed = traces[0], traces[1]
    for t in traces:
        assert len(_values(t["x"])) <= MAX_POINTS
    assert 25.0 in _values(raw["y"]).tolist()
    assert _values(raw["x"])[0] == 1 and _values(raw["x"])[-1] == n
    assert _values(smoothed["x"])[-1] == n


def _values(v) -> np.ndarray:
    """Plotly sends numeric arrays base64-encoded ({'dtype', 'bdata'}); decode them."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)
