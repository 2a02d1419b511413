import pytest

from jobs.openb import parse_nodes, parse_pods
from kernel.errors import InvalidSpec

NODES = (
    "sn,cpu_milli,memory_mib,gpu,model\nopenb-node-0000,64000,262144,2,P100\nopenb-node-0001,32000,65536,0,\n"
)
PODS = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
    "openb-pod-0000,12000,16384,1,1000,,LS,Running,0,10,0\n"
    "openb-pod-0001,6000,12288,1,460,V100M16|V100M32,LS,Running,1,10,1\n"
    "openb-pod-0002,4000,0,0,0,,BE,Pending,2,10,\n"
    "openb-pod-0003,8000,1024,2,1200,,LS,Running,3,10,3\n"
)


def test_node_lists_parse_into_columns() -> None:
    nodes = parse_nodes(NODES)
    assert nodes.names == ("openb-node-0000", "openb-node-0001")
    assert nodes.gpus.tolist() == [2, 0] and nodes.models == ("P100", "")
    assert nodes.total_gpu_milli == 2000


def test_pod_lists_parse_clamp_shares_and_keep_model_lists() -> None:
    pods = parse_pods(PODS)
    assert pods.gpu_milli.tolist() == [1000, 460, 0, 1000]
    assert pods.gpu_spec[1] == "V100M16|V100M32"
    assert pods.total_gpu_milli == 1000 + 460 + 2000


def test_the_five_column_variant_parses_too() -> None:
    pods = parse_pods("name,cpu_milli,memory_mib,num_gpu,gpu_milli\nopenb-pod-0000,1000,1,1,500\n")
    assert pods.gpu_spec == ("",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sn,cpu_milli\nx,1\n",
            "nodes.csv:1: header: missing column(s) memory_mib, gpu, model (have sn, cpu_milli)",
        ),
        (NODES.replace("64000", "6.4e4"), "nodes.csv:2: cpu_milli: not an integer: '6.4e4'"),
    ],
    ids=["missing-columns", "not-an-integer"],
)
def test_malformed_trace_files_are_refused_with_line_and_column(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        parse_nodes(text, "nodes.csv")
    assert str(e.value) == message
