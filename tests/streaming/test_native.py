"""Native submission rendering: every pod template carries the scheduler, the PodGroup and the queue and
the job's labels; the PodGroup admits the first pod only when the whole job fits; the command lines
carry what Spark's and Flink's own clients need. Pure: nothing is run or contacted."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from streaming import native, pipeline_file
from streaming.launch import LaunchResult, render_only
from streaming.plan import Plan, plan
from streaming.spec import Scheduling
from tidescale.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
WORKDIR = Path("/work/submit")
ACCESS = native.ClusterAccess(
    kubeconfig="/k/config",
    server="https://127.0.0.1:6443",
    ca_file="/k/ca.crt",
    cert_file="/k/admin.crt",
    key_file="/k/admin.key",
)


def example(name: str) -> Plan:
    return plan(pipeline_file.load(EXAMPLES / f"{name}.yaml"))


def a_target(**fields: Any) -> native.Target:
    return native.Target(**({"namespace": "team-a"} | fields))


def submit(engine: str, name: str = "llm-preprocessor", **fields: Any) -> native.Submission:
    return native.submission(example(name), engine, a_target(**fields), ACCESS, WORKDIR, f"/bin/{engine}")


def options(command: tuple[str, ...]) -> dict[str, str]:
    """`--conf k=v` (spark) and `-Dk=v` (flink) as a dict."""
    out: dict[str, str] = {}
    for i, part in enumerate(command):
        pair = command[i + 1] if part == "--conf" else part[2:] if part.startswith("-D") else None
        if pair:
            key, _, value = pair.partition("=")
            out[key] = value
    return out


# -- pod templates ------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["spark", "flink"])
def test_every_pod_template_carries_the_scheduler_the_pod_group_the_queue_and_the_job_labels(
    engine: str,
) -> None:
    submission = submit(engine, queue="team-a-q", job_name="prep")
    assert submission.templates  # spark: driver and executor; flink: one for both kinds of pod
    for template in submission.templates.values():
        assert template["spec"]["schedulerName"] == "tidescale"
        assert template["metadata"]["annotations"] == {
            "scheduling.k8s.io/group-name": "prep",
            "scheduling.volcano.sh/queue-name": "team-a-q",
        }
        assert template["metadata"]["labels"] == {
            "tidescale.io/job": "prep",
            "tidescale.io/kind": "Pipeline",
            "tidescale.io/engine": engine,
        }


@pytest.mark.parametrize(
    ("engine", "containers"),
    [
        ("spark", {"driver.yaml": "spark-kubernetes-driver", "executor.yaml": "spark-kubernetes-executor"}),
        ("flink", {"pod.yaml": "flink-main-container"}),
    ],
    ids=["spark-driver-and-executor", "flink-main-container"],
)
def test_the_main_container_has_the_name_the_engine_looks_for(
    engine: str, containers: dict[str, str]
) -> None:
    templates = submit(engine).templates
    assert {name: t["spec"]["containers"][0]["name"] for name, t in templates.items()} == containers


def test_the_scheduler_name_is_configurable_and_the_specs_own_scheduler_is_not_used() -> None:
    # feature-aggregator asks for yunikorn in its spec, for the operator manifests
    templates = submit("spark", "feature-aggregator", scheduler_name="tidescale-b").templates
    assert {t["spec"]["schedulerName"] for t in templates.values()} == {"tidescale-b"}


def test_without_a_queue_argument_the_specs_queue_is_used_and_without_either_there_is_none() -> None:
    from_spec = submit("flink", "feature-aggregator")
    assert from_spec.templates["pod.yaml"]["metadata"]["annotations"]["scheduling.volcano.sh/queue-name"] == (
        "root.features"
    )
    assert from_spec.pod_group["spec"]["queue"] == "root.features"
    no_queue = replace(example("llm-preprocessor"), scheduling=Scheduling())
    neither = native.submission(no_queue, "flink", a_target(), ACCESS, WORKDIR, "/bin/flink")
    assert "scheduling.volcano.sh/queue-name" not in neither.templates["pod.yaml"]["metadata"]["annotations"]
    assert "queue" not in neither.pod_group["spec"]


# -- the PodGroup -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "example_name", "min_resources"),
    [
        # driver 1 CPU, 1024m + 384 Mi overhead; 2 executors of 2 CPU, 4096m + 40 %
        ("spark", "llm-preprocessor", {"cpu": "5", "memory": f"{1024 + 409 + 2 * (4096 + 1638)}Mi"}),
        # + 1 GPU per executor
        (
            "spark",
            "feature-aggregator",
            {"cpu": "3", "memory": f"{1433 + 2 * (2048 + 819)}Mi", "nvidia.com/gpu": 2},
        ),
        # JobManager 1 CPU, 1600 Mi; parallelism 2 over 2 slots: 1 TaskManager of 2 CPU, 4096 Mi
        ("flink", "llm-preprocessor", {"cpu": "3", "memory": f"{1600 + 4096}Mi"}),
        # parallelism 2 over 1 slot: 2 TaskManagers of 1 CPU, 2048 Mi and 1 GPU
        ("flink", "feature-aggregator", {"cpu": "3", "memory": f"{1600 + 2 * 2048}Mi", "nvidia.com/gpu": 2}),
    ],
    ids=["spark-cpu", "spark-gpu", "flink-cpu", "flink-gpu"],
)
def test_the_pod_group_admits_one_pod_first_but_only_when_the_whole_job_fits(
    engine: str, example_name: str, min_resources: dict[str, Any]
) -> None:
    group = submit(engine, example_name, job_name="job").pod_group
    assert group["apiVersion"] == "scheduling.volcano.sh/v1beta1" and group["kind"] == "PodGroup"
    assert group["metadata"]["name"] == "job" and group["metadata"]["namespace"] == "team-a"
    assert group["spec"]["minMember"] == 1  # the first pod creates the others once it runs
    assert group["spec"]["minResources"] == min_resources


def test_spark_sizes_its_pods_as_the_pod_group_counts_them() -> None:
    conf = options(submit("spark").command)
    assert conf["spark.driver.cores"] == "1" and conf["spark.driver.memory"] == "1024m"
    assert conf["spark.executor.instances"] == "2" and conf["spark.executor.memory"] == "4096m"
    assert conf["spark.kubernetes.executor.request.cores"] == "2"
    assert native.spark_memory_mib(1024) == 1433  # what Spark asked for on the real API server


def test_flink_sizes_its_pods_as_the_pod_group_counts_them() -> None:
    conf = options(submit("flink", "feature-aggregator").command)
    assert conf["jobmanager.memory.process.size"] == "1600m"
    assert conf["kubernetes.jobmanager.cpu.amount"] == "1"
    assert conf["taskmanager.memory.process.size"] == "2048m"
    assert conf["kubernetes.taskmanager.cpu.amount"] == "1"
    assert conf["taskmanager.numberOfTaskSlots"] == "1" and conf["parallelism.default"] == "2"
    assert conf["external-resource.gpu.amount"] == "1"


@pytest.mark.parametrize("engine", ["spark", "flink"])
def test_a_made_account_comes_with_the_rights_its_engine_needs_and_a_given_one_does_not(engine: str) -> None:
    made = submit(engine, job_name="prep")
    assert [o["kind"] for o in made.objects] == ["ServiceAccount", "Role", "RoleBinding", "PodGroup"]
    assert made.service_account == "prep"
    role = made.objects[1]
    assert any("pods" in r["resources"] and r["verbs"] == ["*"] for r in role["rules"])
    assert made.objects[2]["subjects"] == [{"kind": "ServiceAccount", "name": "prep", "namespace": "team-a"}]
    for obj in made.objects:
        assert obj["metadata"]["labels"]["tidescale.io/job"] == "prep"
    given = submit(engine, service_account="runner")
    assert [o["kind"] for o in given.objects] == ["PodGroup"] and given.service_account == "runner"


# -- command lines ------------------------------------------------------------------------------------


def test_spark_submit_goes_to_the_server_in_cluster_mode_without_waiting_with_the_templates() -> None:
    submission = submit("spark", job_name="prep", image="registry/spark:1")
    command = submission.command
    assert command[:7] == (
        "/bin/spark",
        "--master",
        "k8s://https://127.0.0.1:6443",
        "--deploy-mode",
        "cluster",
        "--name",
        "prep",
    )
    conf = options(command)
    assert conf["spark.kubernetes.scheduler.name"] == "tidescale"
    assert conf["spark.kubernetes.namespace"] == "team-a"
    assert conf["spark.kubernetes.submission.waitAppCompletion"] == "false"
    assert conf["spark.kubernetes.driver.podTemplateFile"] == str(WORKDIR / "driver.yaml")
    assert conf["spark.kubernetes.executor.podTemplateFile"] == str(WORKDIR / "executor.yaml")
    assert conf["spark.kubernetes.driver.pod.name"] == "prep-driver"
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == "prep"
    assert conf["spark.kubernetes.container.image"] == "registry/spark:1"
    assert conf["spark.kubernetes.authenticate.submission.caCertFile"] == "/k/ca.crt"
    assert conf["spark.kubernetes.authenticate.submission.clientCertFile"] == "/k/admin.crt"
    assert conf["spark.kubernetes.authenticate.submission.clientKeyFile"] == "/k/admin.key"
    assert submission.env["KUBECONFIG"] == "/k/config"
    assert command[command.index("local:///opt/tidescale/streaming/job.py") + 1 :][:2] == (
        "--engine",
        "spark",
    )
    assert submission.root == ("Pod", "prep-driver")


def test_spark_keeps_no_queue_option_of_the_specs_scheduler_that_would_contradict_the_templates() -> None:
    conf = options(submit("spark", "feature-aggregator").command)  # spec: yunikorn, root.features
    assert not [k for k in conf if k.endswith(".label.queue") or "yunikorn" in k]
    assert conf["spark.kubernetes.driver.label.tidescale.io/job"] == "feature-aggregator"


def test_flink_runs_an_application_cluster_from_the_pod_template_with_the_kubeconfig() -> None:
    submission = submit("flink", job_name="prep", image="registry/flink:1")
    command = submission.command
    assert command[:4] == ("/bin/flink", "run", "--target", "kubernetes-application")
    conf = options(command)
    assert conf["kubernetes.cluster-id"] == "prep"
    assert conf["kubernetes.namespace"] == "team-a"
    assert conf["kubernetes.container.image.ref"] == "registry/flink:1"
    assert conf["kubernetes.pod-template-file.default"] == str(WORKDIR / "pod.yaml")
    assert conf["kubernetes.config.file"] == "/k/config"
    assert conf["kubernetes.service-account"] == "prep"
    assert conf["kubernetes.jobmanager.labels"] == (
        "tidescale.io/job:prep,tidescale.io/kind:Pipeline,tidescale.io/engine:flink"
    )
    # Flink's options, then the program, then the program's own arguments
    assert command.index("-py") < command.index("--engine")
    assert command[command.index("-py") + 1] == "local:///opt/tidescale/streaming/job.py"
    assert submission.root == ("Deployment", "prep")


def test_the_template_files_are_written_under_the_workdir_the_command_names() -> None:
    submission = submit("spark")
    files = submission.files()
    assert set(files) == {WORKDIR / "driver.yaml", WORKDIR / "executor.yaml"}
    assert yaml.safe_load(files[WORKDIR / "driver.yaml"]) == submission.templates["driver.yaml"]


@pytest.mark.parametrize(
    ("engine", "name", "reason"),
    [
        ("flink", "9lives", "DNS-1035"),
        ("flink", "a" * 46, "45 characters"),
        ("spark", "Upper", "DNS-1123"),
        ("spark", "a" * 54, "53 characters"),
    ],
    ids=["flink-digit-first", "flink-too-long", "spark-upper-case", "spark-too-long"],
)
def test_a_job_name_the_engine_would_refuse_is_refused_before_anything_runs(
    engine: str, name: str, reason: str
) -> None:
    with pytest.raises(native.InvalidSubmission, match=reason):
        submit(engine, job_name=name)


def test_an_unknown_engine_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(native.InvalidSubmission, match=r"'python' \(known: flink, spark\)"):
        submit("python")


# -- the client's failure ------------------------------------------------------------------------------

SPARK_PKCS8 = """\
26/12/03 08:14:36 INFO SparkKubernetesClientFactory: Auto-configuring K8S client
Exception in thread "main" io.fabric8.kubernetes.client.KubernetesClientException: An error has occurred.
\tat io.fabric8.kubernetes.client.KubernetesClientException.launderThrowable(KCE.java:129)
Caused by: java.io.IOException: Invalid DER: object is not integer
\t... 17 more
"""
FLINK_EXISTS = """\
------------------------------------------------------------
 The program finished with the following exception:

org.apache.flink.client.deployment.ClusterDeploymentException: The Flink cluster fl2 already exists.
\tat org.apache.flink.kubernetes.KubernetesClusterDescriptor.deployClusterInternal(KCD.java:299)
"""


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (
            SPARK_PKCS8,
            "io.fabric8.kubernetes.client.KubernetesClientException: An error has occurred."
            " (caused by java.io.IOException: Invalid DER: object is not integer)",
        ),
        (
            FLINK_EXISTS,
            "org.apache.flink.client.deployment.ClusterDeploymentException:"
            " The Flink cluster fl2 already exists.",
        ),
        ("starting\nno route to host\n\n", "no route to host"),
        ("", "no output"),
    ],
    ids=["exception-and-cause", "exception", "last-line", "nothing"],
)
def test_a_client_failure_is_told_by_its_exception_and_deepest_cause(output: str, reason: str) -> None:
    assert native.failure_reason(output) == reason


# -- dry run and the CLI ------------------------------------------------------------------------------


def test_a_dry_run_returns_the_command_and_templates_without_running_anything(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [
                    {
                        "name": "k",
                        "cluster": {"server": "https://10.1.2.3:6443", "certificate-authority": "ca.crt"},
                    }
                ],
                "users": [
                    {"name": "u", "user": {"client-certificate-data": "AAAA", "client-key-data": "BBBB"}}
                ],
            }
        )
    )
    result = render_only(EXAMPLES / "llm-preprocessor.yaml", "spark", kubeconfig=kubeconfig, queue="q")
    assert isinstance(result, LaunchResult) and result.dry_run and not result.output
    conf = options(result.command)
    assert result.command[2] == "k8s://https://10.1.2.3:6443"
    assert conf["spark.kubernetes.authenticate.submission.caCertFile"] == str(tmp_path / "ca.crt")
    # inline credentials stay in the kubeconfig, which the client reads itself
    assert "spark.kubernetes.authenticate.submission.clientKeyFile" not in conf
    assert result.objects[-1] == "Pod/llm-preprocessor-driver" and result.root == (
        "Pod",
        "llm-preprocessor-driver",
    )
    assert result.pod_group["spec"]["queue"] == "q"


def test_pipeline_submit_dry_run_json_prints_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "pipeline",
            "submit",
            str(EXAMPLES / "feature-aggregator.yaml"),
            "--engine",
            "flink",
            "--dry-run",
            "--json",
            "--namespace",
            "ml",
            "--queue",
            "gpu-q",
            "--name",
            "features",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dryRun"] is True and out["engine"] == "flink" and out["namespace"] == "ml"
    assert out["root"] == {"kind": "Deployment", "name": "features"}
    assert out["podGroup"]["spec"]["queue"] == "gpu-q"
    assert out["templates"]["pod.yaml"]["spec"]["schedulerName"] == "tidescale"
    assert out["command"][1:4] == ["run", "--target", "kubernetes-application"]


def test_pipeline_submit_refuses_an_invalid_file_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: tidescale.io/v1alpha1\nkind: Pipeline\nmetadata: {name: x}\nspec: {}\n")
    assert main(["pipeline", "submit", str(bad), "--engine", "spark", "--dry-run"]) == 2
    assert "bad.yaml" in capsys.readouterr().err
