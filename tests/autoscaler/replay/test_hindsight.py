"""The hindsight frontiers: the FIFO that counts violations and reachable ones, the clairvoyant schedule's
dynamic program, and the report placing replayed controllers against them."""

import json

import numpy as np
import pytest

from autoscaler.replay import hindsight as h
from autoscaler.replay.service_model import ServiceModel
from autoscaler.replay.simulator import Actions, Simulation, replay
from autoscaler.replay.trace import Requests


def a_work(
    arrival: list[float], service: float = 1.0, prefill: float = 0.5, duration: float | None = None
) -> h.Work:
    n = len(arrival)
    return h.Work(
        arrival=np.array(arrival, dtype=np.float64),
        service=np.full(n, service),
        prefill=np.full(n, prefill),
        slo_s=2.0,
        duration_s=duration if duration is not None else max(1.0, max(arrival, default=0.0)),
        gpus_per_replica=1,
        start_s=60.0,
        delay_s=1.0,
    )


@pytest.mark.parametrize(
    ("replicas", "violations"),
    [(0, 4), (1, 2), (2, 0), (4, 0)],
    ids=["none", "one serves in turn", "two", "four"],
)
def test_fifo_counts_requests_whose_wait_plus_prefill_exceeds_the_slo(replicas: int, violations: int) -> None:
    # four at once, 1 s each, 0.5 s to the first token: one replica starts them at 0, 1, 2, 3 s
    assert h.fifo(a_work([0.0, 0.0, 0.0, 0.0]), replicas)[0] == violations


def test_only_violations_a_model_start_into_their_congestion_are_reachable_by_reaction() -> None:
    # one replica, two requests a second for 200 s: the queue grows from the first second on
    long_jam = a_work([i / 2 for i in range(400)])
    violations, reachable = h.fifo(long_jam, 1)
    assert violations > 300
    # those arriving 61 s (model start + detection delay) or more after the jam began
    assert reachable == sum(1 for i in range(400) if i / 2 >= 61.0)
    # a 10 s burst drains long before any replica started at its onset would serve
    short_burst = a_work([100 + i / 10 for i in range(100)], duration=300)
    violations, reachable = h.fifo(short_burst, 2)
    assert violations > 0 and reachable == 0


def test_the_schedule_starts_replicas_only_when_the_violations_they_avoid_outweigh_their_start() -> None:
    levels = np.array([0, 1, 2], dtype=np.int64)
    # window 1 needs 2 replicas to avoid 10 violations; the others need none (holding 2 from the free first
    # window costs 200 GPU-s more than starting them: 2 × 60)
    cost = np.array([[0, 0, 0], [10, 5, 0], [0, 0, 0]], dtype=np.float64)
    gpu = np.tile(levels * 100.0, (3, 1))
    cheap = h.schedule(cost, gpu, levels, start_s=60, lam=100.0)
    assert list(levels[cheap]) == [0, 2, 0]
    dear = h.schedule(cost, gpu, levels, start_s=60, lam=1.0)
    assert list(levels[dear]) == [0, 0, 0]


def test_the_first_window_level_is_in_place_for_free_and_a_level_is_kept_when_restarting_costs_more() -> None:
    levels = np.array([0, 1], dtype=np.int64)
    cost = np.array([[5, 0], [0, 0], [5, 0]], dtype=np.float64)
    path = h.schedule(cost, np.tile(levels * 10.0, (3, 1)), levels, start_s=60, lam=10.0)
    # dropping to 0 in the middle saves 10 GPU-s but restarting costs 60
    assert list(levels[path]) == [1, 1, 1]


def burst_every_ten_minutes() -> h.Work:
    """Quiet (one request every 10 s) with a 20 s burst of 40 requests a second at 300 s and 900 s."""
    quiet = [float(t) for t in range(0, 1200, 10)]
    bursts = [b + i / 40 for b in (300.0, 900.0) for i in range(800)]
    return a_work(sorted(quiet + bursts), duration=1200.0)


def test_a_clairvoyant_schedule_holds_burst_capacity_only_around_the_bursts() -> None:
    work = burst_every_ten_minutes()
    levels = h.levels_for(work)
    enough = next(int(c) for c in levels if h.fifo(work, int(c))[0] == 0)
    constant_hours = enough * work.duration_s / 3600
    best = h.clairvoyant(work, 60.0, levels).least_gpu_hours_within(0)
    assert best is not None
    assert best.gpu_hours < 0.5 * constant_hours
    assert best.starts > 0


def test_a_schedule_served_whole_at_one_level_is_the_fifo_at_that_level() -> None:
    work = burst_every_ten_minutes()
    n_windows = len(h.window_bounds(work, 60.0))
    for c in (3, 8, 20):
        assert h.served(work, 60.0, np.full(n_windows, c)) == h.fifo(work, c, t0=0.0)[0]


def test_served_whole_a_backlog_is_carried_into_the_next_window_where_the_windows_forget_it() -> None:
    # ten 5-second requests at 50 s on one replica: the queue runs to 100 s, past the window's end at 60 s
    work = a_work([50.0] * 10 + [61.0], service=5.0, duration=119.0)
    levels = np.array([0, 1], dtype=np.int64)
    windows = h.Windows.of(work, 60.0, levels)
    assert windows.violations[:, 1].tolist() == [9.0, 0.0]  # the window from 60 s starts empty
    assert h.served(work, 60.0, np.array([1, 1])) == 10  # the request at 61 s waits behind the backlog
    # by the window each request arrived in: the one at 61 s counts in the second
    assert h.served_by_window(work, 60.0, np.array([1, 1])).tolist() == [9, 1]


def test_served_whole_a_lower_level_retires_the_idle_replica_not_the_busy_one() -> None:
    work = a_work([0.0, 61.0], service=100.0, duration=119.0)
    assert h.served(work, 60.0, np.array([2, 2])) == 0
    # at 60 s one of two goes: the idle one; the request at 61 s waits for the other until 100 s
    assert h.served(work, 60.0, np.array([2, 1])) == 1
    # none left: the request never starts
    assert h.served(work, 60.0, np.array([2, 0])) == 1
    # none at first, one from the second window: the first request starts at 60 s
    assert h.served(work, 60.0, np.array([0, 1])) == 2


def test_served_whole_schedules_count_the_backlogs_the_windows_forget() -> None:
    # 8-second requests every 3 s, and a burst of 200 at 300 s: queues run past the windows' edges (not a
    # theorem: a spill-over served whole can also meet a window's extra replicas sooner)
    work = a_work(sorted([float(t) for t in range(0, 1200, 3)] + [300 + i / 4 for i in range(200)]), 8.0)
    levels = h.levels_for(work)
    found = h.search(work, 60.0, levels, budgets=[0.5])
    windowed = {p.gpu_hours: p.violations for _, p, _ in found.optima}
    served = h.clairvoyant_served(work, 60.0, levels, found)
    assert served.points and served.family == "clairvoyant-60s-served"
    for p in served.points:
        assert p.violations >= windowed[p.gpu_hours]
    assert any(p.violations > windowed[p.gpu_hours] for p in served.points)


def test_frontiers_trade_gpu_hours_for_violations_monotonically() -> None:
    work = burst_every_ten_minutes()
    for frontier in (h.clairvoyant(work, w, h.levels_for(work)) for w in (60.0, 300.0)):
        gpu = [p.gpu_hours for p in frontier.points]
        viol = [p.violations for p in frontier.points]
        assert gpu == sorted(gpu) and viol == sorted(viol, reverse=True)
        assert len(set(viol)) == len(viol)


def test_the_fewest_violations_within_a_budget_never_exceed_it() -> None:
    f = h.Frontier("x", (h.Point(1.0, 100, 1.0), h.Point(2.0, 50, 2.0), h.Point(3.0, 0, 3.0)))
    assert f.fewest_violations_within(2.5) == h.Point(2.0, 50, 2.0)
    assert f.fewest_violations_within(0.5) is None
    assert f.least_gpu_hours_within(60) == h.Point(2.0, 50, 2.0)
    assert f.least_gpu_hours_within(-1) is None


def test_the_report_places_each_reference_against_every_family() -> None:
    rng = np.random.default_rng(3)
    arrival = np.sort(np.concatenate([rng.uniform(0, 900, 600), rng.uniform(400, 420, 400)]))
    requests = Requests(
        "gen", arrival, rng.integers(500, 6000, len(arrival)).astype(float), np.full(len(arrival), 20.0)
    )
    refs = [h.Reference("hpa", 2.0, 300), h.Reference("hpa ×0.8", 1.6, None)]
    rep = h.report(requests, ServiceModel(), refs, [60.0, 300.0])
    assert [f.family for f in rep.frontiers] == [
        "constant",
        "clairvoyant-60s",
        "clairvoyant-60s-served",
        "previous-60s",
        "clairvoyant-300s",
        "clairvoyant-300s-served",
        "previous-300s",
    ]
    assert [r.policy for r in rep.references] == ["hpa", "hpa ×0.8"]
    rendered = json.loads(json.dumps(rep.render()))
    assert [r["policy"] for r in rendered["references"]] == ["hpa", "hpa ×0.8"]
    for f in rep.frontiers:
        p = f.fewest_violations_within(2.0)
        assert p is None or p.gpu_hours <= 2.0 + 1e-9
    # knowing each coming minute is never worse than holding one level
    c = rep.best("constant", 2.0)
    k = rep.best("clairvoyant-60s", 2.0)
    assert c is not None and k is not None and k.violations <= c.violations
    assert "constant" in h.format_report(rep) and "reachable" not in h.format_report(rep).split("\n")[0]


def test_the_replays_start_holds_replicas_back_until_their_node_and_model_are_ready() -> None:
    work = h.Work(
        arrival=np.full(40, 10.0),
        service=np.ones(40),
        prefill=np.full(40, 0.5),
        slo_s=2.0,
        duration_s=600.0,
        gpus_per_replica=1,
        start_s=60.0,
        delay_s=1.0,
        warm=1,
        slots=8,
        node_s=180.0,
    )
    assert work.ready_at(10, 0.0) == [0.0] + [60.0] * 7 + [240.0] * 2
    assert work.ready_at(2, 100.0) == [100.0, 100.0]
    # 40 requests at 10 s meet one warm replica: those a single replica cannot finish within 2 s violate
    assert h.fifo(work, 40, t0=0.0)[0] == 38
    # replicas beyond the first node's 8 GPUs hold theirs only once their node is ready
    assert work.gpu_seconds(10, 0.0, 600.0) == 8 * 600 + 2 * 420


class _Constant:
    """Writes `replicas` and the nodes they need at the first step, then does nothing."""

    name = "constant"
    description = "constant"

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.done = False

    def step(self, sim: Simulation) -> Actions | None:
        if self.done:
            return None
        self.done = True
        nodes = -(-self.replicas // sim.model.gpus_per_node) - len(sim.nodes)
        return Actions(replicas=self.replicas, add_nodes=max(0, nodes))


@pytest.mark.parametrize(
    ("burst_at", "measure_from"), [(300.0, 0.0), (100.0, 300.0)], ids=["whole trace", "from 300 s"]
)
def test_a_constant_level_is_exactly_the_replay_of_a_controller_that_holds_it_from_the_start(
    burst_at: float, measure_from: float
) -> None:
    # counted from a second on, the start-up is still served as the replay serves it: only the figures
    # leave it out
    rng = np.random.default_rng(8)
    arrival = np.sort(np.concatenate([rng.uniform(0, 900, 2000), rng.uniform(burst_at, burst_at + 20, 800)]))
    requests = Requests(
        "gen", arrival, rng.integers(500, 6000, len(arrival)).astype(float), np.full(len(arrival), 20.0)
    )
    model = ServiceModel(initial_nodes=1)
    work = h.Work.of(requests, model, measure_from=measure_from)
    whole = h.Work.of(requests, model)
    left_out = 0
    for replicas in (6, 12, 20):
        replayed = replay(requests, model, _Constant(replicas), measure_from=measure_from)
        violations, _ = h.fifo(work, replicas, t0=0.0)
        assert replayed.slo_violations == violations
        assert replayed.gpu_hours == pytest.approx(
            work.gpu_seconds(replicas, measure_from, work.duration_s) / 3600, rel=1e-3
        )
        left_out += h.fifo(whole, replicas, t0=0.0)[0] - violations
    # the burst's violations count only when it comes after the count starts
    assert (left_out > 0) == (burst_at < measure_from)


def test_the_previous_windows_level_lags_a_step_that_the_clairvoyant_schedule_meets() -> None:
    # 5 requests a second for 5 minutes, then 40 a second for 5 minutes
    arrival = [i / 5 for i in range(1500)] + [300 + i / 40 for i in range(12000)]
    work = a_work(arrival, service=0.4, prefill=0.2, duration=600.0)
    levels = h.levels_for(work)
    clair = h.clairvoyant(work, 60.0, levels).least_gpu_hours_within(0)
    assert clair is not None
    lagging = h.previous(work, 60.0, levels).fewest_violations_within(clair.gpu_hours)
    assert (
        lagging is not None and lagging.violations > 1000
    )  # the minute after the step is served by 2 replicas


def test_no_clairvoyant_schedule_within_a_budget_beats_the_lagrangian_bound() -> None:
    work = burst_every_ten_minutes()
    levels = h.levels_for(work)
    frontier = h.clairvoyant(work, 60.0, levels)
    windows = h.Windows.of(work, 60.0, levels)
    # every schedule that holds one level per window (sampled) respects the bound at its own GPU-hours
    rng = np.random.default_rng(1)
    for _ in range(200):
        path = rng.integers(0, len(levels), size=windows.violations.shape[0])
        p = h._point(work, windows.violations, windows.gpu, levels, path, 60.0)
        bound = frontier.violations_at_least(p.gpu_hours)
        assert bound is not None and p.violations >= bound - 1e-6
    # and the bound is tight at the schedules the search found
    for p in frontier.points:
        bound = frontier.violations_at_least(p.gpu_hours)
        assert bound is not None and bound <= p.violations + 1e-6
    assert h.Frontier("constant", frontier.points).violations_at_least(1.0) is None


def test_counted_from_a_second_the_windows_before_it_are_left_out() -> None:
    work = burst_every_ten_minutes()  # bursts at 300 s and 900 s, 1,200 s long
    later = h.Work(**{**work.__dict__, "measure_from": 600.0})
    levels = h.levels_for(work)
    whole = h.Windows.of(work, 60.0, levels)
    counted = h.Windows.of(later, 60.0, levels)
    # the windows from the tenth minute on, figure for figure
    assert counted.violations.shape == (whole.violations.shape[0] - 10, len(levels))
    assert np.array_equal(counted.violations, whole.violations[10:])
    assert np.array_equal(counted.gpu, whole.gpu[10:])
    # a window cut by the start of the count counts only its measured part
    cut = h.Windows.of(h.Work(**{**work.__dict__, "measure_from": 630.0}), 60.0, levels)
    assert cut.gpu.shape[0] == counted.gpu.shape[0] and cut.gpu[0, 1] == 30.0 and cut.gpu[1, 1] == 60.0
    # one burst left to pay for: the least a clairvoyant schedule without violations needs is lower
    free_whole = h.clairvoyant(work, 60.0, levels).least_gpu_hours_within(0)
    free_later = h.clairvoyant(later, 60.0, levels).least_gpu_hours_within(0)
    assert free_whole is not None and free_later is not None
    assert free_later.gpu_hours < free_whole.gpu_hours
    # the replicas held over the ten measured minutes, and the model starts, make up the GPU-hours
    held = free_later.mean_replicas * 600 + free_later.starts * 60
    assert free_later.gpu_hours * 3600 == pytest.approx(held)
    rep = h.report(
        Requests("gen", work.arrival, np.full(len(work.arrival), 500.0), np.full(len(work.arrival), 20.0)),
        ServiceModel(),
        [h.Reference("hpa", 1.0, 10)],
        [60.0],
        measure_from=600.0,
    )
    assert rep.measured_from_s == 600.0 and rep.render()["measured_from_s"] == 600.0
    assert "counted from 600 s" in h.format_report(rep)
