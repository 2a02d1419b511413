from dataclasses import replace

import numpy as np
import pytest

from autoscaler.replay.environment import PROMETHEUS, Pipeline
from autoscaler.replay.service_model import ServiceModel
from autoscaler.replay.simulator import Actions, Simulation, largest_burst, replay
from autoscaler.replay.trace import Requests
from tests.autoscaler.autoscaler_builders import requests_at

MODEL = ServiceModel(cold_start_s=60, node_provisioning_s=180, scrape_interval_s=15, metric_delay_s=5)


class Fixed:
    """A controller that writes `plan[t]` (replicas, nodes to add) at second t and records what it saw."""

    name = "fixed"
    description = "test"

    def __init__(self, plan: dict[int, Actions] | None = None) -> None:
        self.plan = plan or {}
        self.seen: dict[int, tuple[int, int]] = {}

    def step(self, sim: Simulation) -> Actions | None:
        self.seen[sim.t] = (sim.spec_replicas(), sim.ready_replicas())
        return self.plan.get(sim.t)


def test_an_unloaded_replica_answers_after_the_prefill() -> None:
    r = replay(requests_at([1.0, 11.0, 21.0], prompt=8000), MODEL, Fixed())
    assert r.latency.tolist() == pytest.approx([1.0, 1.0, 1.0])  # 8,000 tokens at 8,000 tokens/s
    assert r.slo_violations == 0


def test_requests_wait_in_one_fifo_for_the_first_free_replica() -> None:
    r = replay(requests_at([0.0, 0.0, 0.0], prompt=8000), MODEL, Fixed())
    assert sorted(r.latency.tolist()) == pytest.approx([1.0, 2.0, 3.0])
    assert r.slo_violations == 1  # only the third waits past 2 s
    two = replay(requests_at([0.0, 0.0, 0.0], prompt=8000), MODEL, Fixed(), initial_replicas=2)
    assert sorted(two.latency.tolist()) == pytest.approx([1.0, 1.0, 2.0])


def test_a_new_replica_serves_after_its_cold_start_and_one_needing_a_node_after_provisioning_too() -> None:
    model = ServiceModel(gpus_per_node=1, initial_nodes=1, cold_start_s=60, node_provisioning_s=180)
    ctl = Fixed({0: Actions(replicas=2, add_nodes=1)})
    sim = Simulation(requests_at([400.0]), model)
    sim.run(ctl)
    assert ctl.seen[179] == (2, 1)  # the new node is still provisioning
    assert ctl.seen[239] == (2, 1)  # bound at 180, starting
    assert ctl.seen[240] == (2, 2)
    assert sim.cold_starts == 1


def test_gpu_hours_count_bound_replicas_and_node_hours_count_nodes() -> None:
    model = ServiceModel(gpus_per_node=8, initial_nodes=1)
    r = replay(requests_at([0.0, 3599.0], prompt=80), model, Fixed(), initial_replicas=2)
    assert r.gpu_hours == pytest.approx(2.0, rel=0.01)
    assert r.node_gpu_hours == pytest.approx(8.0, rel=0.01)


def test_counted_from_a_second_the_result_leaves_out_the_start_up_before_it() -> None:
    model = ServiceModel(gpus_per_node=8, initial_nodes=1)
    # three requests at once on one replica: the third waits past the 2 s objective; one more an hour later
    requests = requests_at([0.0, 0.0, 0.0, 3599.0], prompt=8000)
    whole = replay(requests, model, Fixed(), initial_replicas=2)
    later = replay(requests, model, Fixed(), initial_replicas=2, measure_from=1800.0)
    assert (whole.requests, whole.slo_violations) == (4, 0)
    assert (later.requests, later.slo_violations) == (1, 0)
    assert later.gpu_hours == pytest.approx(whole.gpu_hours - 1.0, rel=0.01)  # 2 GPUs for half an hour
    assert later.node_gpu_hours == pytest.approx(whole.node_gpu_hours - 4.0, rel=0.01)
    one = replay(requests, model, Fixed())
    assert one.slo_violations == 1 and replay(requests, model, Fixed(), measure_from=1.0).slo_violations == 0
    assert len(later.latency) == 1


def test_scaled_down_replicas_finish_their_request_and_stop_taking_new_ones() -> None:
    ctl = Fixed({1: Actions(replicas=1)})
    r = replay(requests_at([0.5, 0.5, 1.5], prompt=16000), MODEL, ctl, initial_replicas=2)
    # both start at 0.5 (2 s each); at 1 one replica is removed: the third waits for the survivor
    assert sorted(r.latency.tolist()) == pytest.approx([2.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("costs", "survivors_on"),
    [
        pytest.param((), ["node-0", "node-1"], id="without-costs-the-crowded-node-loses-one"),
        pytest.param(
            (("pod-0", 2), ("pod-1", 2), ("pod-2", 1)), ["node-0", "node-0"], id="the-lowest-cost-goes-first"
        ),
    ],
)
def test_a_scale_down_deletes_by_the_deletion_cost_set_on_the_pods_before_co_location(
    costs: tuple[tuple[str, int], ...], survivors_on: list[str]
) -> None:
    # two 2-GPU nodes, MostAllocated: pod-0 and pod-1 on node-0, pod-2 on node-1
    model = replace(MODEL, gpus_per_node=2, initial_nodes=2)
    sim = Simulation(requests_at([100.0]), model, initial_replicas=3)
    assert {p.name: p.node for p in sim.live.values()} == {
        "pod-0": "node-0",
        "pod-1": "node-0",
        "pod-2": "node-1",
    }
    sim.apply(Actions(replicas=2, deletion_costs=costs), 1)
    assert sorted(str(p.node) for p in sim.live.values()) == survivors_on


@pytest.mark.parametrize(
    ("t", "pipeline", "sample"),
    [(19, PROMETHEUS, 0), (20, PROMETHEUS, 15), (4, PROMETHEUS, None), (7, Pipeline(2.0), 6)],
    ids=["before the next scrape", "scraped and visible", "nothing yet", "direct read"],
)
def test_controllers_see_samples_only_after_scrape_and_delay(
    t: int, pipeline: Pipeline, sample: int | None
) -> None:
    sim = Simulation(requests_at([0.0]), MODEL)
    sim.t = t
    assert sim.sample_time(pipeline) == sample


def test_gateway_series_exist_without_pods_and_server_series_vanish_with_them() -> None:
    sim = Simulation(requests_at([0.0, 0.1, 0.2]), MODEL, initial_replicas=0)
    sim.run(_Stopper())
    sim.t = 40
    assert sim.query("sum(gateway_queue_depth)", PROMETHEUS) is not None
    assert sim.query("sum(vllm:num_requests_waiting)", PROMETHEUS) is None
    assert sim.query("sum(rate(gateway_requests_total[1m]))", PROMETHEUS) is not None


class _Stopper:
    name = "stop"
    description = "stays at zero for a minute, then serves"

    def step(self, sim: Simulation) -> Actions | None:
        return Actions(replicas=1) if sim.t == 60 else None


def test_concurrency_counts_a_full_batch_per_busy_replica_plus_the_queue() -> None:
    model = ServiceModel(batch_size=16)
    sim = Simulation(requests_at([0.0, 0.0], prompt=80000), model)  # 10 s each on one replica
    ctl = Fixed()
    sim.horizon = 8
    sim.run(ctl)
    sim.t = 5
    assert sim.concurrency(5) == pytest.approx(16 + 1)


def test_the_largest_burst_is_the_bin_that_most_exceeds_the_minute_before() -> None:
    times = list(np.linspace(0, 100, 20)) + [200.0 + i / 100 for i in range(100)]
    onset, work = largest_burst(requests_at(times, prompt=8000), MODEL)
    assert onset == 200
    assert work == pytest.approx(10.0)


# --- measured service times and the replay's step ----------------------------------------------------------


def measured(times: list[float], service: list[float]) -> Requests:
    """A request log with measured service times (as GenTD26 gives them), no tokens."""
    n = len(times)
    return Requests("measured", np.array(times), np.zeros(n), np.zeros(n), np.array(service))


def test_a_measured_service_time_replaces_the_token_model_and_latency_is_the_queueing_delay() -> None:
    r = replay(measured([0.0, 0.0, 0.0, 100.0], [30.0, 30.0, 5.0, 1.0]), MODEL, Fixed())
    # one replica, one at a time for the measured time: waits of 0, 30 and 60 s, then none
    assert r.latency.tolist() == pytest.approx([0.0, 30.0, 60.0, 0.0])
    assert r.slo_violations == 2  # over the 2 s SLO


def test_for_trace_fits_the_model_to_measured_service_times_and_long_traces() -> None:
    short = ServiceModel().for_trace(measured([0.0, 3600.0], [20.0, 40.0]))
    assert (short.measured_service_s, short.batch_size, short.tick_s) == (30.0, 1, 1)
    assert "queueing delay" in " ".join(short.describe())
    long = ServiceModel().for_trace(requests_at([0.0, 2 * 86400.0]))
    assert (long.measured_service_s, long.batch_size, long.tick_s) == (0.0, 16, 5)
    assert "time to first token" in " ".join(long.describe())
    assert ServiceModel(tick_s=3).for_trace(requests_at([0.0, 2 * 86400.0])).tick_s == 3


def _wave(seed: int = 3) -> Requests:
    rng = np.random.default_rng(seed)
    times = sorted(rng.uniform(0, 900, 400).tolist())
    return measured(times, rng.uniform(1.0, 12.0, 400).tolist())


def test_a_coarser_step_serves_every_request_exactly_as_one_second_steps_do() -> None:
    """Without scaling the step changes nothing a controller sees nor any request's latency: service is exact
    between steps and every per-second record is kept."""
    runs = []
    for tick in (1, 5):
        sim = Simulation(_wave(), replace(MODEL, tick_s=tick), initial_replicas=4)
        runs.append((sim, sim.run(Fixed())))
    (one, r1), (five, r5) = runs
    assert r5.latency.tolist() == pytest.approx(r1.latency.tolist())
    end = min(one.end, five.end) - 4  # what every step has written (the last one's counters come later)
    for series in ("queue_at", "running_at", "busy", "c_completed", "serving_n", "live_at"):
        coarse, fine = getattr(five, series)[:end].tolist(), getattr(one, series)[:end].tolist()
        assert coarse == pytest.approx(fine), series
    assert five.end % 5 == 0


def test_with_a_coarser_step_controllers_act_and_pods_start_at_its_multiples() -> None:
    model = replace(MODEL, tick_s=5, cold_start_s=60)
    ctl = Fixed({0: Actions(replicas=3), 7: Actions(replicas=1), 10: Actions(replicas=4)})
    sim = Simulation(_wave(), model)
    sim.run(ctl)
    assert sorted(ctl.seen)[:4] == [0, 5, 10, 15]  # asked at each step only: 7 never comes
    assert (ctl.seen[55], ctl.seen[60], ctl.seen[65], ctl.seen[70]) == ((4, 1), (4, 3), (4, 3), (4, 4))
