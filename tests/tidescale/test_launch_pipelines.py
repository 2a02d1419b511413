"""The streaming Pipeline as a launcher kind: parsed with the file's line numbers, its launcher fields
(`spec.engine`, `spec.target`) taken out before the streaming spec is validated, the flags filling what
the document leaves out; a dry run through `tidescale submit FILE` beside the launcher's own kinds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from jobs.launcher.external import ExternalJob, split_documents
from jobs.launcher.render import Defaults
from kernel.errors import InvalidSpec
from streaming import pipeline_file
from tidescale.cli import main
from tidescale.launch_pipelines import PipelineKind, kinds

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pipelines" / "llm-preprocessor.yaml"
TRAINING = """apiVersion: tidescale.io/v1alpha1
kind: TrainingJob
metadata: {name: ft}
spec: {image: trainer:1, command: [torchrun], workers: 2, resources: {gpus: 1}}
"""


def pipeline_text(engine: str | None = "spark", target: str | None = None, name: str | None = None) -> str:
    text = EXAMPLE.read_text()
    extra = "".join(f"  {k}: {v}\n" for k, v in (("engine", engine), ("target", target)) if v)
    text = text.replace("\nspec:\n", "\nspec:\n" + extra, 1)
    return text.replace("name: llm-preprocessor", f"name: {name}", 1) if name else text


def parse(text: str, **options: str) -> ExternalJob:
    return PipelineKind().parse(text, "jobs.yaml", EXAMPLE.parent, Defaults(namespace="ml"), options)


def test_a_pipeline_document_with_its_engine_parses_with_the_flags_filling_the_rest() -> None:
    job = PipelineKind().parse(pipeline_text(), "jobs.yaml", EXAMPLE.parent, Defaults(namespace="ml"), {})
    assert (job.kind, job.name, job.namespace) == ("Pipeline", "llm-preprocessor", "ml")
    assert job.queue == "preprocessing"  # the document's scheduling.queue
    assert job.scheduler_name == "tidescale"  # the spec's schedulerName is the operator manifests'
    assert job.workload == ("Pod", "llm-preprocessor-driver")
    spec = job.document["spec"]
    assert (spec["engine"], spec["target"], spec["queue"], spec["schedulerName"]) == (
        "spark",
        "kubernetes",
        "preprocessing",
        "tidescale",
    )
    flink = PipelineKind().parse(
        pipeline_text(None), "f.yaml", EXAMPLE.parent, Defaults(), {"engine": "flink"}
    )
    assert flink.workload == ("Deployment", "llm-preprocessor") and flink.namespace == "default"


@pytest.mark.parametrize(
    ("text", "options", "problem"),
    [
        pytest.param(pipeline_text(None), {}, "8: spec.engine: missing: set it", id="no engine"),
        pytest.param(pipeline_text("storm"), {}, "9: spec.engine: no engine 'storm'", id="unknown engine"),
        pytest.param(
            pipeline_text("python"),
            {},
            "9: spec.engine: no engine 'python' (known: flink, spark); python runs only on this machine",
            id="the python engine on Kubernetes",
        ),
        pytest.param(
            pipeline_text(target="moon"), {}, "10: spec.target: no target 'moon'", id="unknown target"
        ),
        pytest.param(
            pipeline_text().replace("parallelism: 2", "parallelism: 0"),
            {},
            "54: spec.parallelism:",
            id="the streaming spec's own error keeps the file's line",
        ),
        pytest.param(
            pipeline_text(name="a" * 50, engine="flink"),
            {},
            "7: metadata.name: job name",
            id="a name Flink refuses",
        ),
    ],
)
def test_an_invalid_pipeline_names_the_line_and_the_field(
    text: str, options: dict[str, str], problem: str
) -> None:
    with pytest.raises(InvalidSpec) as e:
        parse(text, **options)
    assert any(p.startswith(problem) for p in e.value.problems), e.value.problems


def test_a_launcher_field_in_a_flow_mapping_is_refused_with_its_line() -> None:
    text = "apiVersion: tidescale.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\nspec: {engine: spark}\n"
    with pytest.raises(InvalidSpec) as e:
        parse(text)
    assert "4: spec.engine: write it on a line of its own (a block mapping)" in e.value.problems


def test_the_submit_command_dry_runs_a_file_with_a_training_job_and_a_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(EXAMPLE.parent / "models.csv", tmp_path / "models.csv")
    path = tmp_path / "jobs.yaml"
    path.write_text(TRAINING + "---\n" + pipeline_text(name="prep"))
    assert main(["submit", str(path), "-n", "ml", "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(j["kind"], j["name"], j["namespace"]) for j in out["jobs"]] == [
        ("TrainingJob", "ft", "ml"),
        ("Pipeline", "prep", "ml"),
    ]
    pipeline = out["jobs"][1]
    assert pipeline["objects"] == ["ConfigMap/tidescale-job-prep"]
    assert pipeline["launch"]["root"] == {"kind": "Pod", "name": "prep-driver"}
    assert "--master" in pipeline["launch"]["command"]
    root = next(o for o in out["objects"] if o["metadata"]["name"] == "tidescale-job-prep")
    assert root["metadata"]["annotations"] == {"tidescale.io/workload": "Pod/prep-driver"}

    assert main(["submit", str(path), "-n", "ml", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "# Pipeline prep: would create ServiceAccount/prep, Role/prep, RoleBinding/prep" in text


def test_the_submit_command_reports_every_problem_of_a_mixed_file_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(TRAINING.replace("workers: 2", "workers: 0") + "---\n" + pipeline_text(None))
    assert main(["submit", str(path), "--kubeconfig", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}:4: spec.workers:")
    assert err[1].startswith(f"{path}:13: spec.engine: missing"), err


def test_a_pipeline_may_not_take_the_name_of_another_job_of_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(EXAMPLE.parent / "models.csv", tmp_path / "models.csv")
    path = tmp_path / "jobs.yaml"
    path.write_text(TRAINING + "---\n" + pipeline_text(name="ft"))
    assert main(["submit", str(path), "--kubeconfig", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "metadata.name: Pipeline 'ft' has the name of a TrainingJob of the file (namespace default)" in err


def test_the_composition_root_registers_the_pipeline_kind() -> None:
    assert set(kinds()) == {"Pipeline"}
    split = split_documents(TRAINING + "---\n" + pipeline_text(), kinds())
    assert [k for k, _ in split.external] == ["Pipeline"]


# -- a local pipeline: `pipeline run` in the background, from the launcher --------------------------------


def test_a_local_pipeline_runs_pipeline_run_on_the_pipeline_written_in_its_directory() -> None:
    job = parse(pipeline_text("python", "local", name="prep"), bootstrap="kafka:9092", maxRecords="50")
    assert (job.kind, job.name, job.namespace, job.queue, job.scheduler_name) == (
        "Pipeline",
        "prep",
        "ml",
        "",
        "",
    )
    assert job.workload == ("Process", "prep")
    assert job.local is not None
    assert job.local.command[1:] == (
        "-m",
        "tidescale",
        "pipeline",
        "run",
        "pipeline.yaml",
        "--engine",
        "python",
        "--bootstrap",
        "kafka:9092",
        "--max-records",
        "50",
    )
    # the pipeline it runs is the document's, its table inlined: it needs no other file
    written = pipeline_file.parse(job.local.files["pipeline.yaml"], "pipeline.yaml", Path("/nonexistent"))
    original = pipeline_file.load(EXAMPLE).model_copy(update={"metadata": written.metadata})
    assert written == original
    assert written.metadata.name == "prep"
    assert (job.document["spec"]["target"], job.document["spec"]["engine"]) == ("local", "python")


def test_the_target_flag_fills_a_document_without_one_and_a_jvm_engine_keeps_its_state_beside_it() -> None:
    job = parse(pipeline_text("flink"), target="local", bootstrap="kafka:9092", bounded="true")
    assert job.local is not None
    assert job.local.command[-3:] == ("--bounded", "--checkpoint-dir", "checkpoints")
    # the document's own target wins over the flag
    assert parse(pipeline_text("flink", "kubernetes"), target="local").local is None


def test_a_local_pipeline_without_kafka_is_refused_naming_the_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TIDESCALE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("TIDESCALE_STATE_DIR", str(tmp_path))  # no `tidescale local up` there
    with pytest.raises(InvalidSpec) as e:
        parse(pipeline_text("python", "local"))
    assert e.value.problems == [
        "10: spec.target: local: no Kafka for the engine: pass --bootstrap, set TIDESCALE_KAFKA_BOOTSTRAP "
        "or run `tidescale local up`"
    ]
    monkeypatch.setenv("TIDESCALE_KAFKA_BOOTSTRAP", "env:9092")
    job = parse(pipeline_text("python", "local"))
    assert job.local is not None and "env:9092" in job.local.command


def test_a_dry_run_of_a_local_pipeline_prints_its_record_and_the_command_it_would_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIDESCALE_JOBS_DIR", str(tmp_path / "jobs"))
    shutil.copy(EXAMPLE.parent / "models.csv", tmp_path / "models.csv")
    path = tmp_path / "prep.yaml"
    path.write_text(pipeline_text("python", name="prep"))
    argv = ["submit", str(path), "-n", "ml", "--target", "local", "--bootstrap", "kafka:9092", "--dry-run"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (job,) = out["jobs"]
    directory = str(tmp_path / "jobs" / "ml" / "prep")
    assert job["launch"]["target"] == "local"
    assert job["launch"]["directory"] == directory
    assert job["launch"]["log"] == f"{directory}/engine.log"
    assert job["launch"]["command"][-4:] == ["--engine", "python", "--bootstrap", "kafka:9092"]
    (root,) = out["objects"]
    annotations = root["metadata"]["annotations"]
    assert annotations["tidescale.io/target"] == "local"
    assert annotations["tidescale.io/directory"] == directory
    assert "tidescale.io/workload" not in annotations
    assert not (tmp_path / "jobs").exists()  # a dry run starts nothing, writes nothing

    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "# Pipeline prep: would create ConfigMap/tidescale-job-prep, Process" in text
    assert "#   and run: " in text and "pipeline run pipeline.yaml --engine python" in text
