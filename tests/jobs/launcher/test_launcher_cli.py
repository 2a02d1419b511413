"""`tidescale submit` and `jobs …` without a cluster: quick forms equal their YAML, dry runs, exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from autoscaler.api.policy import ScalingPolicy
from jobs.launcher.cli import add_commands, add_job_commands, format_job, format_list, jobs_from_args
from jobs.launcher.render import Defaults, render
from jobs.launcher.status import JobView, PodView
from tidescale.cli import main

HEAD = "apiVersion: tidescale.io/v1alpha1\n"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tidescale")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub, scaling_policy=ScalingPolicy)
    jobs = sub.add_parser("jobs").add_subparsers(dest="jobs_command", required=True)
    add_job_commands(jobs)
    return parser.parse_args(argv)


def _objects(argv: list[str]) -> list[dict[str, object]]:
    args = _parse(argv)
    defaults = Defaults(**{k: v for k, v in (("namespace", args.namespace), ("queue", args.queue)) if v})
    return [o for job in jobs_from_args(args) for o in render(job, defaults).objects]


def _yaml_objects(text: str, tmp_path: Path, *flags: str) -> list[dict[str, object]]:
    path = tmp_path / "job.yaml"
    path.write_text(HEAD + text)
    return _objects(["submit", str(path), *flags])


QUICK = [
    pytest.param(
        "submit training --name ft --workers 4 --gpus 1 --image trainer:1 --queue research "
        "-- torchrun t.py --lr 1",
        "kind: TrainingJob\nmetadata: {name: ft}\n"
        "spec: {image: 'trainer:1', workers: 4, resources: {gpus: 1}, "
        "command: [torchrun, t.py, --lr, '1']}\n",
        ["--queue", "research"],
        id="a training job of four one-GPU workers",
    ),
    pytest.param(
        "submit training --name ft --workers 2 --image t:1 --cpu 8 --memory 64Gi --gpus 8 "
        "--device rdma/hca=1 -e NCCL_DEBUG=INFO --selector pool=h100 --toleration gpu --priority high "
        "--no-gang --retry 2 "
        "--port 23456 --annotation a=b --label team=ml -- python t.py",
        "kind: TrainingJob\nmetadata: {name: ft, labels: {team: ml}}\n"
        "spec:\n  image: t:1\n  workers: 2\n  command: [python, t.py]\n"
        "  resources: {cpu: '8', memory: 64Gi, gpus: 8, devices: {rdma/hca: 1}}\n"
        "  env: {NCCL_DEBUG: INFO}\n  nodeSelector: {pool: h100}\n"
        "  tolerations: [{key: gpu, operator: Exists}]\n  priority: high\n  gang: false\n"
        "  backoffLimit: 2\n  port: 23456\n  annotations: {a: b}\n",
        [],
        id="a training job with every flag",
    ),
    pytest.param(
        "submit inference --name llm --image vllm:1 --replicas 2 --gpu-memory 12000 --gpu-cores 30 "
        "--port 8080 -n ml",
        "kind: InferenceService\nmetadata: {name: llm}\n"
        "spec: {image: 'vllm:1', replicas: 2, port: 8080, "
        "resources: {gpuShare: {memoryMiB: 12000, cores: 30}}}\n",
        ["-n", "ml"],
        id="an inference service on shared GPUs",
    ),
    pytest.param(
        "submit inference --name rr --image r:1 --gpumemory 8000 --gpucore 20",
        "kind: InferenceService\nmetadata: {name: rr}\n"
        "spec: {image: 'r:1', resources: {gpuShare: {memoryMiB: 8000, cores: 20}}}\n",
        [],
        id="Arena's --gpumemory and --gpucore spellings",
    ),
    pytest.param(
        "submit inference --name rr --image r:1 --vgpu-ratio 4 --replicas 3",
        "kind: InferenceService\nmetadata: {name: rr}\n"
        "spec: {image: 'r:1', replicas: 3, resources: {vgpu: {ratio: 4}}}\n",
        [],
        id="an inference service on quarter vGPU slices",
    ),
    pytest.param(
        "submit batch --name etl --image e:1 --completions 6 --parallelism 2 --cpu 2 -- python etl.py",
        "kind: BatchJob\nmetadata: {name: etl}\n"
        "spec: {image: 'e:1', completions: 6, parallelism: 2, resources: {cpu: '2'}, "
        "command: [python, etl.py]}\n",
        [],
        id="a batch job",
    ),
]


@pytest.mark.parametrize(("argv", "text", "flags"), QUICK)
def test_quick_form_flags_render_exactly_the_objects_of_the_yaml_they_stand_for(
    argv: str, text: str, flags: list[str], tmp_path: Path
) -> None:
    assert _objects(argv.split()) == _yaml_objects(text, tmp_path, *flags)


def test_a_word_that_names_no_quick_form_is_a_file(tmp_path: Path) -> None:
    args = _parse(["submit", "jobs.yaml", "--queue", "q", "--dry-run"])
    assert (args.form, args.file, args.queue, args.dry_run) == ("FILE", Path("jobs.yaml"), "q", True)


def test_a_dry_run_prints_every_object_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(HEAD + "kind: TrainingJob\nmetadata: {name: ft}\nspec: {image: t, workers: 2}\n")
    assert main(["submit", str(path), "--dry-run", "--kubeconfig", str(tmp_path / "none")]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "PodGroup", "Service", "Job"]


def test_a_dry_run_in_json_is_one_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["submit", "inference", "--name", "llm", "--image", "v:1", "--gpus", "1", "--dry-run", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["jobs"][0]["objects"] == ["ConfigMap/tidescale-job-llm", "Deployment/llm", "Service/llm"]


def test_an_invalid_file_exits_2_naming_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(HEAD + "kind: TrainingJob\nmetadata: {name: ft}\nspec:\n  image: t\n  workers: 0\n")
    assert main(["submit", str(path), "--dry-run"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"{path}:6: spec.workers: Input should be greater than or equal to 1"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            "submit inference --name x --image i --gpu-cores 30",
            "--gpu-cores: needs --gpu-memory",
            id="GPU cores without GPU memory",
        ),
        pytest.param(
            "submit inference --name x --image i --gpus 1 --vgpu-ratio 4",
            "gpus and vgpu: ask GPUs one way",
            id="whole GPUs and a vGPU slice together",
        ),
        pytest.param(
            "submit training --name x --image i -e NOVALUE", "-e/--env: KEY=VALUE", id="an env without ="
        ),
        pytest.param(
            "submit training --name X --image i", "metadata.name: String should match", id="a bad name"
        ),
    ],
)
def test_invalid_quick_form_flags_exit_2(argv: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv.split(), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def _view(phase: str = "Running") -> JobView:
    pod = PodView("ft-0-abcde", "worker", "0", "Running", "n1", 1.0, {"gpus": "3"}, "tidescale", True, "", "")
    pending = PodView(
        "ft-1-fghij", "worker", "1", "Pending", "", 1.0, {}, "tidescale", False, "Unschedulable: no", ""
    )
    return JobView(
        "ft",
        "ml",
        "TrainingJob",
        phase,
        "1/2 pods bound",
        "research",
        "tidescale",
        "2026-01-01T00:00:00Z",
        (pod, pending),
    )


def test_the_list_table_has_arenas_columns() -> None:
    from datetime import UTC, datetime

    text = format_list([_view()], all_namespaces=True, now=datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    head, row = text.splitlines()
    columns = "NAMESPACE NAME KIND STATUS QUEUE PODS GPU(REQUESTED) GPU(ALLOCATED) AGE NODE"
    assert head.split() == columns.split()
    assert row.split() == ["ml", "ft", "TrainingJob", "Running", "research", "1/2", "2", "1", "1m", "n1"]


def test_get_shows_each_pod_with_its_node_devices_and_the_schedulers_reason() -> None:
    from datetime import UTC, datetime

    text = format_job(_view(), now=datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert "Status:      Running (1/2 pods bound)" in text
    assert any(
        line.split()[:7] == ["ft-0-abcde", "worker", "0", "Running", "n1", "1", "gpus=3"]
        for line in text.splitlines()
    )
    assert any(
        line.startswith("ft-1-fghij") and line.endswith("Unschedulable: no") for line in text.splitlines()
    )


def test_get_shows_a_pending_jobs_place_in_its_queue_in_the_table_and_in_json() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from jobs.launcher.queueing import QueuePosition

    view = replace(_view(), phase="Pending", position=QueuePosition("research", 2, 5, "Priority"))
    text = format_job(view, now=datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert "Queue:       research (position 2 of 5 pending)" in text.splitlines()
    assert view.to_json()["queuePosition"] == {
        "queue": "research",
        "position": 2,
        "pending": 5,
        "policy": "Priority",
    }
    assert "Queue:       research" in format_job(_view(), now=datetime(2026, 1, 1, tzinfo=UTC)).splitlines()
    assert _view().to_json()["queuePosition"] is None


def test_a_local_job_shows_its_host_process_and_log_and_from_another_host_says_where_it_runs() -> None:
    from datetime import UTC, datetime

    from jobs.launcher.local import Exit, Host, LocalRecord, Process, Seen, local_view

    record = LocalRecord(
        "laptop", "/j/ml/prep", "/j/ml/prep/engine.log", ("python", "-m", "x"), Process(7, "b:1")
    )
    base = JobView("prep", "ml", "Pipeline", "Pending", "", "", "", "2026-01-01T00:00:00Z")
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    done = local_view(base, record, Seen(Host("laptop", "b"), exit=Exit(0)))
    text = format_job(done, now)
    assert "Status:      Succeeded (process 7 exited with status 0)" in text
    assert "Host:        laptop" in text and "Process:     7 (exit status 0)" in text
    assert "Log:         /j/ml/prep/engine.log" in text and "Command:     python -m x" in text
    elsewhere = local_view(base, record, Seen(Host("server", "c")))
    assert format_list([elsewhere], all_namespaces=False, now=now).splitlines()[1].split()[:6] == [
        "prep",
        "Pipeline",
        "Unknown",
        "(on",
        "host",
        "laptop)",
    ]
    assert "Status:      Unknown (on host laptop: process 7 can be seen only there)" in format_job(
        elsewhere, now
    )
