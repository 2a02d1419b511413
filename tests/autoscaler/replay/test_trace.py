from pathlib import Path

import numpy as np
import pytest

from autoscaler.replay.trace import (
    SYNTHETIC,
    Requests,
    index_of_dispersion,
    load_trace,
    multiply,
    parse_duration,
    parse_trace,
    parse_window,
    synthetic,
    window,
)
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
    with pytest.raises(InvalidSpec) as e:
        parse_trace("time,requests\n1,2\n", "x.csv")
    assert "want TIMESTAMP,ContextTokens,GeneratedTokens, a GenTD26 request log" in str(e.value)
    assert "or timestamp,qps" in str(e.value)


def test_an_aligned_rate_multiplier_adds_jittered_copies_and_keeps_the_shape() -> None:
    base = requests_at([0.0, 100.0, 200.0])
    tripled = multiply(base, 3, copies="aligned")
    assert len(tripled) == 9
    assert np.all(np.diff(tripled.arrival) >= 0)
    for t in (0.0, 100.0, 200.0):
        assert int(((tripled.arrival >= t) & (tripled.arrival < t + 1)).sum()) == 3
    assert len(multiply(requests_at([float(i) for i in range(1000)]), 0.5)) == pytest.approx(500, abs=60)
    assert multiply(base, 3, copies="aligned").arrival.tolist() == tripled.arrival.tolist()  # seeded


def test_independent_copies_are_the_whole_trace_shifted_and_do_not_arrive_together() -> None:
    # a session of three requests 5 s apart, then silence, repeated every 10 minutes for a day
    starts = np.arange(0.0, 86_400.0, 600.0)
    base = requests_at(sorted(t + d for t in starts for d in (0.0, 5.0, 10.0)))
    many = multiply(base, 20)
    assert len(many) == 20 * len(base) and np.all(np.diff(many.arrival) >= 0)
    assert "independent copies" in many.name
    # no group of 20 in one second: the copies' sessions interleave
    per_second = np.bincount(many.arrival.astype(np.int64))
    assert per_second.max() < 10
    # each copy keeps its sessions: most requests have another 5 s after them (a shifted session)
    later = np.searchsorted(many.arrival, many.arrival + 5.0 - 1e-6)
    exact = np.abs(many.arrival[np.minimum(later, len(many) - 1)] - (many.arrival + 5.0)) < 1e-6
    assert exact.mean() > 0.6
    # the hourly counts stay those of 20 copies (the first and last hours hold the wrapped ends)
    hourly = np.bincount((many.arrival // 3600).astype(np.int64), minlength=24)[1:-1]
    assert hourly.min() >= 20 * 18 * 0.9 and hourly.max() <= 20 * 18 * 1.1
    assert multiply(base, 20).arrival.tolist() == many.arrival.tolist()  # seeded


def test_an_unknown_way_of_copying_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: independent, aligned"):
        multiply(requests_at([0.0, 1.0]), 2, copies="stacked")


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


# --- the GenTD26 request log -------------------------------------------------------------------------------

GENTD26_HEADER = (
    "gmt_create,predict_type,predict_status,exec_time_seconds,groupId,prompt_length,negative_prompt_length,"
    "num_images_per_prompt,num_inference_steps,checkpoint_model_version_id,num_lora"
)


def gentd26_file(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A GenTD26-format log written here: (gmt_create, predict_status, exec_time_seconds) per row."""
    lines = [GENTD26_HEADER]
    for i, (at, status, exec_s) in enumerate(rows):
        lines.append(f"{at},TXT_2_IMG,{status},{exec_s},G{i:04d},63.0,,1.0,30.0,M0000,0")
    path = tmp_path / "lora_requests.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_gentd26_log_gives_each_request_its_execution_time_and_fills_the_missing_with_the_median(
    tmp_path: Path,
) -> None:
    path = gentd26_file(
        tmp_path,
        [
            ("2024-11-15 16:57:50", "SUCCEED", "32.0"),
            ("2024-11-15 16:57:50", "SUCCEED", ""),  # no execution time
            ("2024-11-15 16:58:00", "FAILED", "7.0"),  # it held a GPU until it failed: kept
            ("2024-11-15 16:58:30", "SUCCEED", "20.0"),
            ("2024-11-15 17:00:00", "PENDING", "0.0"),  # not finished when the trace was cut
            ("2024-11-15 17:00:01", "SUCCEED", "50.0"),
        ],
    )
    r = load_trace(path)
    assert r.arrival.tolist() == [0.0, 0.0, 10.0, 40.0, 130.0, 131.0]
    assert r.service is not None
    # the median of the measured 32, 7, 20 and 50 s
    assert r.service.tolist() == [32.0, 26.0, 7.0, 20.0, 26.0, 50.0]
    assert r.prompt.sum() == 0 and r.generated.sum() == 0
    assert r.notes == (
        "6 requests (4 SUCCEED, 1 FAILED, 1 PENDING), each with its measured execution time",
        "1 of them did not succeed and keep their measured time (they held a GPU until they ended)",
        "2 without an execution time (empty, or 0 s before they finished) got the median 26 s",
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("2024-11-15 25:00:00", "SUCCEED", "3"), "lora_requests.csv:3: gmt_create: not a time"),
        (("2024-11-15 16:58:00", "SUCCEED", "fast"), "lora_requests.csv:3: exec_time_seconds: not a number"),
        (("2024-11-15 16:58:00", "SUCCEED", "-4"), "lora_requests.csv:3: exec_time_seconds: negative"),
    ],
    ids=["bad time", "bad number", "negative"],
)
def test_a_bad_gentd26_row_is_named_by_line_and_field(
    tmp_path: Path, row: tuple[str, str, str], message: str
) -> None:
    path = gentd26_file(tmp_path, [("2024-11-15 16:57:50", "SUCCEED", "30"), row])
    with pytest.raises(InvalidSpec, match=message):
        load_trace(path)


def test_a_gentd26_log_without_any_execution_time_is_refused(tmp_path: Path) -> None:
    path = gentd26_file(tmp_path, [("2024-11-15 16:57:50", "SUCCEED", ""), ("2024-11-15 16:58:50", "", "")])
    with pytest.raises(InvalidSpec, match="no row has an exec_time_seconds"):
        load_trace(path)


def test_a_window_keeps_the_requests_inside_it_and_counts_time_from_its_start(tmp_path: Path) -> None:
    path = gentd26_file(
        tmp_path,
        [
            ("2024-11-15 00:00:00", "SUCCEED", "10"),
            ("2024-11-15 00:59:59", "SUCCEED", "11"),
            ("2024-11-15 01:00:00", "SUCCEED", "12"),
            ("2024-11-15 01:30:00", "SUCCEED", "13"),
            ("2024-11-15 02:00:00", "SUCCEED", "14"),
        ],
    )
    w = window(load_trace(path), *parse_window("1h,2h"))
    assert w.arrival.tolist() == [0.0, 1800.0]
    assert w.service is not None and w.service.tolist() == [12.0, 13.0]
    assert w.name == "lora_requests.csv [1h–2h]"
    assert window(load_trace(path), *parse_window("3599,")).arrival.tolist() == [0.0, 1.0, 1801.0, 3601.0]


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        ("0,3d", (0.0, 259200.0)),
        ("2d,", (172800.0, None)),
        (",90m", (0.0, 5400.0)),
        ("10,20.5", (10.0, 20.5)),
    ],
)
def test_window_bounds_take_seconds_or_a_unit(text: str, bounds: tuple[float, float | None]) -> None:
    assert parse_window(text) == bounds


@pytest.mark.parametrize(
    ("text", "message"),
    [("3d", "want START,END"), ("2h,1h", "want 0 ≤ START < END"), ("1w,2w", "START '1w': not a duration")],
    ids=["one bound", "reversed", "unknown unit"],
)
def test_a_bad_window_says_what_it_wants(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_window(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), ("90", 90.0), ("10m", 600.0), ("1.5h", 5400.0), ("2d", 172800.0)]
)
def test_a_duration_takes_seconds_or_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text, "--warmup") == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [("ten", "--warmup 'ten': not a duration"), ("-5m", "--warmup '-5m': want a duration ≥ 0")],
    ids=["not a number", "negative"],
)
def test_a_bad_duration_names_the_flag_and_what_it_wants(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text, "--warmup")


def test_a_window_with_no_request_in_it_is_refused() -> None:
    with pytest.raises(ValueError, match="no request in it"):
        window(requests_at([0.0, 10.0]), 20.0, 30.0)


def test_a_rate_multiplier_copies_each_requests_service_time_with_it() -> None:
    base = Requests(
        "log", np.array([0.0, 50.0, 100.0]), np.zeros(3), np.zeros(3), np.array([5.0, 30.0, 70.0])
    )
    for factor, copies in ((3.0, 3), (20.0, 20)):
        many = multiply(base, factor, copies="aligned")
        assert many.service is not None and len(many) == 3 * copies
        for t, s in ((0.0, 5.0), (50.0, 30.0), (100.0, 70.0)):
            near = (many.arrival >= t) & (many.arrival < t + 1)
            assert many.service[near].tolist() == [s] * copies
    half = multiply(
        Requests("log", np.arange(1000.0), np.zeros(1000), np.zeros(1000), np.arange(1000.0)), 0.5
    )
    assert half.service is not None and half.service.tolist() == half.arrival.tolist()
    fractional = multiply(base, 2.5, copies="aligned")
    assert fractional.service is not None
    for t, s in ((0.0, 5.0), (50.0, 30.0), (100.0, 70.0)):
        near = (fractional.arrival >= t) & (fractional.arrival < t + 1)
        assert set(fractional.service[near].tolist()) == {s}


def test_the_index_of_dispersion_is_one_for_poisson_arrivals_and_the_burst_size_for_bursts() -> None:
    rng = np.random.default_rng(2)
    poisson = np.sort(rng.uniform(0, 10_000, 50_000))
    d = index_of_dispersion(poisson, 10.0)
    assert d is not None and 0.85 < d < 1.15
    # the same number of requests in groups of 10 arriving together: counts vary ten times as much
    groups = np.repeat(np.sort(rng.uniform(0, 10_000, 5_000)), 10)
    d = index_of_dispersion(groups, 10.0)
    assert d is not None and 8.5 < d < 11.5
    # counted from a second on; too few windows, or none, give no figure
    assert index_of_dispersion(poisson, 10.0, start_s=5_000) == pytest.approx(
        index_of_dispersion(poisson[poisson >= 5_000] - 5_000, 10.0)
    )
    assert index_of_dispersion(poisson[:3], 10_000.0) is None
    assert index_of_dispersion(np.array([]), 10.0) is None
