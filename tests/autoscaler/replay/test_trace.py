from pathlib import Path

import numpy as np
import pytest

from autoscaler.replay.trace import SYNTHETIC, load_trace, multiply, parse_trace, synthetic
from kernel.errors import InvalidSpec
from tests.autoscaler.autoscaler_builders import requests_at


def test_the_azure_format_keeps_100_ns_digits_crlf_and_a_missing_final_newline(tmp_path: Path) -> None:
    text = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        "2023-11-16 18:17:03.9799600,4808,10\r\n"
        "2023-11-16 18:17:04.0319600,3180,8\r\n"
        "2023-11-16 18:17:05.0000001,110,27"
    )
    path = tmp_path / "log.csv"
    path.write_bytes(text.encode())
    r = load_trace(path)
    assert r.arrival.tolist() == pytest.approx([0.0, 0.052, 1.0200401], abs=1e-6)
    assert r.prompt.tolist() == [4808, 3180, 110]
    assert r.generated.tolist() == [10, 8, 27]


def test_a_rate_series_becomes_poisson_arrivals_with_the_mean_request() -> None:
    rows = "\n".join(f"{i * 60},{q}" for i, q in enumerate([1.0, 10.0, 0.0]))
    r = parse_trace("timestamp,qps\n" + rows, "rates.csv", mean_prompt=1000, mean_generated=10)
    first = int((r.arrival < 60).sum())
    second = int(((r.arrival >= 60) & (r.arrival < 120)).sum())
    assert 30 < first < 100 and 450 < second < 750
    assert int((r.arrival >= 120).sum()) == 0
    assert set(r.prompt.tolist()) == {1000.0}


def test_an_unknown_header_is_refused_with_the_formats_it_accepts() -> None:
    with pytest.raises(InvalidSpec, match="want TIMESTAMP,ContextTokens,GeneratedTokens or timestamp,qps"):
        parse_trace("time,requests\n1,2\n", "x.csv")


def test_a_rate_multiplier_adds_jittered_copies_and_keeps_the_shape() -> None:
    base = requests_at([0.0, 100.0, 200.0])
    tripled = multiply(base, 3)
    assert len(tripled) == 9
    assert np.all(np.diff(tripled.arrival) >= 0)
    for t in (0.0, 100.0, 200.0):
        assert int(((tripled.arrival >= t) & (tripled.arrival < t + 1)).sum()) == 3
    assert len(multiply(requests_at([float(i) for i in range(1000)]), 0.5)) == pytest.approx(500, abs=60)
    assert multiply(base, 3).arrival.tolist() == tripled.arrival.tolist()  # seeded


@pytest.mark.parametrize("kind", SYNTHETIC)
def test_synthetic_traces_are_reproducible_and_near_their_mean_rate(kind: str) -> None:
    a = synthetic(kind, seed=3)
    b = synthetic(kind, seed=3)
    assert a.arrival.tolist() == b.arrival.tolist()
    assert 1.0 < len(a) / 3600 < 4.5
    assert a.prompt.max() <= 7437 and a.generated.min() >= 1


def test_an_unknown_synthetic_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: bursty, steps, diurnal"):
        synthetic("spiky")
