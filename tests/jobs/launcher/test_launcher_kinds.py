"""The launcher's YAML vocabulary: what parses, and problems named by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.api.policy import ScalingPolicy
from jobs.launcher.kinds import BatchJob, InferenceService, TrainingJob, parse_jobs, read_jobs
from kernel.errors import InvalidSpec
from tests.jobs.launcher.launcher_builders import a_service, a_training_job

HEAD = "apiVersion: tidescale.io/v1alpha1\n"

VALID = [
    pytest.param(
        HEAD
        + "kind: TrainingJob\nmetadata: {name: ft}\nspec: {image: t:1, workers: 4, resources: {gpus: 2}}\n",
        TrainingJob,
        id="a training job of four workers",
    ),
    pytest.param(
        HEAD + "kind: InferenceService\nmetadata: {name: llm}\n"
        "spec: {image: vllm:1, replicas: 2, resources: {gpuShare: {memoryMiB: 12000, cores: 30}}}\n",
        InferenceService,
        id="an inference service on shared GPUs",
    ),
    pytest.param(
        HEAD
        + "kind: InferenceService\nmetadata: {name: rr}\nspec: {image: r:1, resources: {vgpu: {ratio: 4}}}\n",
        InferenceService,
        id="an inference service on a quarter vGPU slice",
    ),
    pytest.param(
        HEAD + "kind: BatchJob\nmetadata: {name: etl, namespace: data}\n"
        "spec: {image: e:1, completions: 8, parallelism: 2, command: [python, etl.py]}\n",
        BatchJob,
        id="a batch job",
    ),
    pytest.param(
        HEAD + "kind: TrainingJob\nmetadata: {name: ft}\n"
        "spec: {image: t:1, workers: 2, command: [python, t.py], master: {resources: {cpu: '4'}}}\n",
        TrainingJob,
        id="a training job with a master",
    ),
]


@pytest.mark.parametrize(("text", "kind"), VALID)
def test_each_kind_parses_from_its_yaml(text: str, kind: type) -> None:
    (job,) = parse_jobs(text, "f.yaml")
    assert isinstance(job, kind)


INVALID = [
    pytest.param(
        HEAD + "kind: PyTorchJob\nmetadata: {name: x}\nspec: {}\n",
        "f.yaml:2: kind: no kind 'PyTorchJob' (known: InferenceService, TrainingJob, BatchJob)",
        id="an unknown kind is named with the known ones",
    ),
    pytest.param(
        HEAD + "kind: TrainingJob\nmetadata: {name: x}\nspec:\n  image: t\n  workers: 2\n"
        "  resources: {gpus: 1, gpuShare: {memoryMiB: 100}}\n",
        "f.yaml:7: spec.resources: gpus and gpuShare: ask GPUs one way (whole, shared or vGPU slices)",
        id="two ways of asking GPUs are refused",
    ),
    pytest.param(
        HEAD + "kind: InferenceService\nmetadata: {name: x}\nspec:\n  image: t\n"
        "  resources:\n    vgpu: {ratio: 3}\n",
        "f.yaml:7: spec.resources.vgpu.ratio: Input should be 2, 4 or 8",
        id="a vGPU ratio other than 2, 4 or 8 is refused at its line",
    ),
    pytest.param(
        HEAD + "kind: BatchJob\nmetadata: {name: x}\nspec:\n  image: t\n"
        "  resources: {devices: {nvidia.com/gpu: 1}}\n",
        "f.yaml:6: spec.resources.devices: nvidia.com/gpu: ask GPUs with `gpus`, not under devices",
        id="a GPU under devices points at the gpus field",
    ),
    pytest.param(
        HEAD + "kind: BatchJob\nmetadata: {name: Big_Job}\nspec: {image: t}\n",
        "f.yaml:3: metadata.name: String should match pattern",
        id="a name that is not a DNS label is refused",
    ),
    pytest.param(
        HEAD + "kind: InferenceService\nmetadata: {name: x}\nspec:\n  image: t\n  replica: 2\n",
        "f.yaml:6: spec.replica: Extra inputs are not permitted",
        id="an unknown field is refused at its line",
    ),
    pytest.param(
        HEAD + "kind: TrainingJob\nmetadata: {name: x}\nspec: {image: t, workers: 2, minAvailable: 3}\n",
        "f.yaml:4: spec.minAvailable: 3 is more than the job's 2 pods",
        id="a gang cannot need more pods than the job has",
    ),
    pytest.param(
        HEAD + "kind: TrainingJob\nmetadata: {name: x}\n"
        "spec: {image: t, workers: 2, gang: false, minAvailable: 1}\n",
        "f.yaml:4: spec.minAvailable: only a gang has one (gang: false)",
        id="minAvailable without a gang is refused",
    ),
    pytest.param(
        HEAD + "kind: TrainingJob\nmetadata: {name: x}\nspec: {image: t, workers: 2, master: {}}\n",
        "f.yaml:4: spec.master: the workers need a command (their RANK is set in front of it)",
        id="a master needs the workers' command, which their rank is set in front of",
    ),
    pytest.param(
        HEAD + "kind: InferenceService\nmetadata: {name: x}\nspec:\n  image: t\n"
        "  scalingPolicy: {targetRef: {name: y}, maxReplicas: 2}\n",
        "f.yaml:6: spec.scalingPolicy.targetRef: set by the launcher",
        id="an inline policy may not aim elsewhere",
    ),
    pytest.param(
        HEAD
        + "kind: BatchJob\nmetadata: {name: x}\nspec: {image: t}\n---\n"
        + HEAD
        + "kind: TrainingJob\nmetadata: {name: x}\nspec: {image: t, workers: 1}\n",
        "f.yaml:8: [document 2] metadata.name: 'x' is also the name of document 1",
        id="two jobs of one name in one file are refused",
    ),
    pytest.param("", "f.yaml:1: (document): empty", id="an empty file is refused"),
    pytest.param("kind: [", "f.yaml:1: (document): not valid YAML", id="text that is not YAML is refused"),
]


@pytest.mark.parametrize(("text", "problem"), INVALID)
def test_an_invalid_document_names_file_line_and_field(text: str, problem: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        parse_jobs(text, "f.yaml")
    assert problem in str(e.value)


def test_an_inline_scaling_policy_is_checked_with_the_model_the_composition_root_passes() -> None:
    text = (
        HEAD + "kind: InferenceService\nmetadata: {name: llm}\nspec:\n  image: vllm:1\n  scalingPolicy:\n"
        "    maxReplicas: 4\n    triggers:\n      - type: GPUUtilization\n        target: 170\n"
    )
    assert parse_jobs(text, "f.yaml")  # without the model: carried as a mapping
    with pytest.raises(InvalidSpec) as e:
        parse_jobs(text, "f.yaml", scaling_policy=ScalingPolicy)
    assert str(e.value) == (
        "f.yaml:10: spec.scalingPolicy.triggers.0.target: 170% is above 100% for aggregation mean"
    )


def test_a_valid_inline_policy_passes_the_autoscalers_model() -> None:
    text = (
        HEAD + "kind: InferenceService\nmetadata: {name: llm}\n"
        "spec:\n  image: vllm:1\n  resources: {gpus: 1}\n  scalingPolicy:\n"
        "    maxReplicas: 4\n    triggers: [{type: GPUUtilization, target: 70}]\n"
    )
    (job,) = parse_jobs(text, "f.yaml", scaling_policy=ScalingPolicy)
    assert isinstance(job, InferenceService)


def test_every_problem_of_every_document_is_reported_at_once() -> None:
    text = (
        HEAD
        + "kind: TrainingJob\nmetadata: {name: a}\nspec: {image: t, workers: 0}\n---\n"
        + HEAD
        + "kind: BatchJob\nmetadata: {name: b}\nspec: {completions: 0}\n"
    )
    with pytest.raises(InvalidSpec) as e:
        parse_jobs(text, "f.yaml")
    assert len(e.value.problems) == 3  # workers; image missing and completions, in document 2


def test_a_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match=r"nope.yaml:0: \(document\): file not found"):
        read_jobs(tmp_path / "nope.yaml")


def test_environment_values_read_as_numbers_or_booleans_reach_the_container_as_strings() -> None:
    job = a_training_job(env={"WORKERS": 4, "DEBUG": True, "LR": 0.1, "NAME": "x"})
    assert job.spec.env == {"WORKERS": "4", "DEBUG": "true", "LR": "0.1", "NAME": "x"}


@pytest.mark.parametrize(
    ("resources", "limits", "annotations"),
    [
        pytest.param(
            {"gpus": 2, "cpu": 8, "memory": "64Gi"},
            {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"},
            {},
            id="whole GPUs",
        ),
        pytest.param(
            {"gpuShare": {"memoryMiB": 12000, "cores": 30}},
            {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "12000", "nvidia.com/gpucores": "30"},
            {},
            id="a shared GPU in HAMi's names",
        ),
        pytest.param(
            {"vgpu": {"ratio": 4}},
            {"nvidia.com/gpu": "1"},
            {"tidescale.io/vgpu-ratio": "4"},
            id="a vGPU slice",
        ),
        pytest.param({"devices": {"rdma/hca": 1}}, {"rdma/hca": "1"}, {}, id="another device by its name"),
    ],
)
def test_resources_render_as_the_scheduler_vocabulary(
    resources: dict[str, object], limits: dict[str, str], annotations: dict[str, str]
) -> None:
    r = a_service(resources=resources).spec.resources
    assert r.limits() == limits
    assert r.annotations() == annotations


def test_the_readmes_launcher_example_validates(repo_root: Path) -> None:
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## The launcher") :]
    example = section[section.index("```yaml\n") + len("```yaml\n") :]
    (job,) = parse_jobs(example[: example.index("```")], "README.md", scaling_policy=ScalingPolicy)
    assert isinstance(job, InferenceService)
