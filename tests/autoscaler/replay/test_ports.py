"""The controller's ports over the simulated cluster: what the shipped loop reads and writes becomes the
tick's `Actions`."""

from __future__ import annotations

from autoscaler.controller.kube.selectors import parse
from autoscaler.core.deletion_cost import PlacedPod, deletion_costs
from autoscaler.replay.ports import SimScaler, SimTargets, _Tick
from autoscaler.replay.service_model import ServiceModel
from autoscaler.replay.simulator import Simulation
from tests.autoscaler.autoscaler_builders import requests_at

# two 2-GPU nodes, MostAllocated: pod-0 and pod-1 on node-0, pod-2 on node-1
MODEL = ServiceModel(gpus_per_node=2, initial_nodes=2)


def test_deletion_costs_set_through_the_sim_port_stay_on_the_pods_and_rank_the_ticks_scale_down() -> None:
    sim = Simulation(requests_at([100.0]), MODEL, initial_replicas=3)
    tick = _Tick()
    targets, scaler = SimTargets("svc"), SimScaler()
    for port in (targets, scaler):
        port.point_at(sim, tick)
    selector = parse("app=svc")
    changed = deletion_costs(targets.pods("ml", selector))
    for pod, cost in changed.items():
        targets.set_deletion_cost("ml", pod, cost)
    scaler.scale(targets.view("ml", "apps/v1", "Deployment", "svc"), 2)
    actions = tick.actions()
    assert actions is not None and dict(actions.deletion_costs) == {"pod-0": 2, "pod-1": 2, "pod-2": 1}

    sim.apply(actions, 1)
    assert targets.pods("ml", selector) == [PlacedPod("pod-0", "node-0", 2), PlacedPod("pod-1", "node-0", 2)]
    assert deletion_costs(targets.pods("ml", selector)) == {}  # already right: nothing to write next time
