"""The Kafka lag metric source: the consumer-group lag of every KafkaLag trigger, a few admin requests per
cluster.

Per cluster (the trigger's `bootstrapServers`, else the source's default) and read, whatever the number of
policies: one ListOffsets per partition leader for the end offsets of every partition involved (after a
Metadata request for the leaders), and one OffsetFetch per group coordinator for the committed offsets of
every group (kafka-python's `list_group_offsets` batches groups on brokers with OffsetFetch v8, Kafka 3.0+).
Partition lists are described again every `metadata_ttl_s` (and at once for a topic that fails). The admin
client of each cluster is created once and reused. That keeps a read cheap enough for the controller's lag
watch to poll every second: about 0.1 s for 500 policies on 500 groups and 50 topics against the local broker.

Lag follows KEDA's Kafka scaler (../shared/reference/autoscaling.md §2.5): per partition
`end offset − committed offset` (never below 0), summed over the topic's partitions. A partition the group has
no committed offset for counts as KEDA's default `offsetResetPolicy: latest` does, lag 1: a new group's
consumer would start at the end, so the backlog is not work, but one replica must run for the group to start
committing (with `offset_reset="earliest"` it counts the whole partition, `end offset`, as KEDA does). The
reading is `Reading(value=total lag, series={"partitions": n, "partitionsWithLag": k,
"uncommittedPartitions": u}, at=now)`; the KafkaLag evaluator caps replicas at `partitions`.

Failures become `Reading(error=…)`: a topic that does not exist fails the requests on it; a group whose
offsets cannot be read fails the requests of that group; a cluster that cannot be reached fails every request
on it, and its client is dropped and re-created no sooner than `retry_after_s` later, so that a dead cluster
costs one timeout per `retry_after_s`, not one per read.

A cluster going down is logged once (WARNING) and coming back once (INFO), not once per read.

I/O: the Kafka admin protocol (kafka-python). No clock: `now` is an argument.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import kafka.errors
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec

from autoscaler.controller.ports import MetricRequest, ReadingKey
from autoscaler.core.triggers import Reading
from kernel.logs import Outage

log = logging.getLogger(__name__)

OffsetReset = Literal["latest", "earliest"]


class Admin(Protocol):
    """The part of `kafka.KafkaAdminClient` the source uses."""

    def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]: ...
    def list_partition_offsets(
        self, specs: dict[Any, Any], timeout_ms: int | None = None
    ) -> dict[Any, Any]: ...
    def list_group_offsets(self, group_specs: dict[str, Any]) -> dict[str, dict[Any, Any]]: ...
    def close(self) -> None: ...


AdminFactory = Callable[[str, float], Admin]


def kafka_admin(bootstrap: str, timeout_s: float) -> Admin:
    """A kafka-python admin client that gives up after `timeout_s` (bootstrap and each request)."""
    ms = max(1, int(timeout_s * 1000))
    admin: Admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="tidescale-lag",
        request_timeout_ms=ms,
        bootstrap_timeout_ms=ms,
        reconnect_backoff_max_ms=1000,
    )
    return admin


@dataclass
class _Cluster:
    admin: Admin | None = None
    error: str = ""  # why the last attempt to reach it failed
    retry_at: float = 0.0
    # Partitions by topic and when they were described: partition counts change rarely (and only upwards).
    partitions: dict[str, list[TopicPartition]] = field(default_factory=dict)
    described_at: dict[str, float] = field(default_factory=dict)
    outage: Outage | None = None  # logs the cluster going down and coming back, once each


class KafkaLagSource:
    """Reads KafkaLag triggers; `rounds` counts cluster reads (each a few admin requests) for tests and
    benchmarks."""

    kinds: frozenset[str] = frozenset({"KafkaLag"})

    def __init__(
        self,
        bootstrap: str,
        *,
        timeout_s: float = 3.0,
        retry_after_s: float = 5.0,
        metadata_ttl_s: float = 30.0,
        offset_reset: OffsetReset = "latest",
        admin_factory: AdminFactory = kafka_admin,
    ) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.metadata_ttl_s = metadata_ttl_s
        self.offset_reset = offset_reset
        self._factory = admin_factory
        self._clusters: dict[str, _Cluster] = {}
        self._lock = threading.Lock()
        self.rounds = 0

    def close(self) -> None:
        with self._lock:
            for c in self._clusters.values():
                _close(c)
            self._clusters.clear()

    def read(self, requests: Sequence[MetricRequest], now: float) -> dict[ReadingKey, Reading]:
        by_cluster: dict[str, list[MetricRequest]] = defaultdict(list)
        out: dict[ReadingKey, Reading] = {}
        for r in requests:
            if getattr(r.spec, "type", None) != "KafkaLag":
                out[(r.policy, r.trigger)] = Reading(
                    error=f"Kafka lag source does not read {getattr(r.spec, 'type', '?')!r} triggers"
                )
                continue
            by_cluster[r.spec.bootstrap_servers or self.bootstrap].append(r)
        with self._lock:
            for cluster, group in by_cluster.items():
                out.update(self._read_cluster(cluster, group, now))
        return out

    # --- one cluster ---------------------------------------------------------------------------------

    def _admin(self, bootstrap: str, now: float) -> Admin | str:
        c = self._clusters.setdefault(bootstrap, _Cluster())
        if c.outage is None:
            c.outage = Outage(log, f"Kafka at {bootstrap}", "kafka")
        if c.admin is not None:
            return c.admin
        if now < c.retry_at:
            return f"{c.error} (next attempt in {c.retry_at - now:.0f} s)"
        try:
            c.admin = self._factory(bootstrap, self.timeout_s)
        except Exception as e:  # kafka-python raises KafkaError, OSError or ValueError (bad address)
            c.error = f"Kafka at {bootstrap}: cannot connect: {_describe(e)}"
            c.retry_at = now + self.retry_after_s
            return c.error
        return c.admin

    def _read_cluster(
        self, bootstrap: str, requests: list[MetricRequest], now: float
    ) -> dict[ReadingKey, Reading]:
        self.rounds += 1
        admin = self._admin(bootstrap, now)
        c = self._clusters[bootstrap]
        assert c.outage is not None
        if isinstance(admin, str):
            c.outage.down((c.error or admin).removeprefix(f"Kafka at {bootstrap}: "))
            return {(r.policy, r.trigger): Reading(error=admin) for r in requests}
        try:
            lags = self._lags(admin, bootstrap, requests, c, now)
        except kafka.errors.BrokerResponseError as e:  # the broker answered, with an error for all of them
            c.outage.up()
            why = f"Kafka at {bootstrap}: {_describe(e)}"
            return {(r.policy, r.trigger): Reading(error=why) for r in requests}
        except Exception as e:  # the cluster failed as a whole (timeout, connection lost): reconnect later
            _close(c)
            c.error = f"Kafka at {bootstrap}: {_describe(e)}"
            c.retry_at = now + self.retry_after_s
            c.outage.down(_describe(e))
            return {(r.policy, r.trigger): Reading(error=c.error) for r in requests}
        c.outage.up()
        out: dict[ReadingKey, Reading] = {}
        for r in requests:
            got = lags.get((r.spec.topic, r.spec.group))
            if isinstance(got, str) or got is None:
                out[(r.policy, r.trigger)] = Reading(error=got or f"Kafka at {bootstrap}: no lag computed")
            else:
                total, series = got
                out[(r.policy, r.trigger)] = Reading(value=float(total), series=series, at=now)
        return out

    def _lags(
        self, admin: Admin, bootstrap: str, requests: list[MetricRequest], cluster: _Cluster, now: float
    ) -> dict[tuple[str, str], tuple[int, dict[str, float]] | str]:
        """Lag and partition counts per (topic, group), or why there are none."""
        topics = sorted({r.spec.topic for r in requests})
        pairs = sorted({(r.spec.topic, r.spec.group) for r in requests})
        out: dict[tuple[str, str], tuple[int, dict[str, float]] | str] = {}
        # 1. partitions of every topic (described again after metadata_ttl_s)
        missing: dict[str, str] = {}
        stale = [t for t in topics if now - cluster.described_at.get(t, -math.inf) > self.metadata_ttl_s]
        for info in admin.describe_topics(stale) if stale else ():
            name = str(info["name"])
            code = int(info.get("error_code", 0))
            if code == kafka.errors.UnknownTopicOrPartitionError.errno:
                missing[name] = f"Kafka at {bootstrap}: topic {name!r} does not exist"
            elif code:
                err = kafka.errors.for_code(code)
                missing[name] = f"Kafka at {bootstrap}: topic {name!r}: {err.__name__}"
            elif not info.get("partitions"):
                missing[name] = f"Kafka at {bootstrap}: topic {name!r} has no partitions"
            else:
                cluster.partitions[name] = sorted(
                    (TopicPartition(name, int(p["partition_index"])) for p in info["partitions"]),
                    key=lambda tp: tp.partition,
                )
                cluster.described_at[name] = now
        for t in topics:
            if t not in cluster.partitions and t not in missing:
                missing[t] = f"Kafka at {bootstrap}: topic {t!r} is not in the metadata"
        partitions = {
            t: cluster.partitions[t] for t in topics if t in cluster.partitions and t not in missing
        }
        # 2. end offsets of all of them at once
        ends = self._ends(admin, bootstrap, partitions, missing)
        for name in missing:  # deleted, or not there yet: describe it again next time
            cluster.partitions.pop(name, None)
            cluster.described_at.pop(name, None)
        # 3. committed offsets of every group, for the partitions of its topics
        wanted: dict[str, list[TopicPartition]] = defaultdict(list)
        for topic, group in pairs:
            wanted[group].extend(partitions.get(topic, []))
        committed = self._committed(admin, bootstrap, {g: tps for g, tps in wanted.items() if tps})
        # 4. lag per (topic, group)
        for topic, group in pairs:
            if topic in missing:
                out[(topic, group)] = missing[topic]
                continue
            offsets = committed.get(group)
            if isinstance(offsets, str) or offsets is None:
                out[(topic, group)] = offsets or f"Kafka at {bootstrap}: no offsets for group {group!r}"
                continue
            out[(topic, group)] = self._lag(partitions[topic], ends, offsets)
        return out

    def _ends(
        self,
        admin: Admin,
        bootstrap: str,
        partitions: Mapping[str, list[TopicPartition]],
        missing: dict[str, str],
    ) -> dict[TopicPartition, int]:
        """End offsets of every partition, in one call; a partition-level error (a leader moving, a topic
        just created) fails only its topic (the batch is then asked again one topic at a time)."""
        timeout_ms = int(self.timeout_s * 1000)

        def ask(tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            got = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST), timeout_ms=timeout_ms)
            return {tp: int(o.offset) for tp, o in got.items()}

        every = [tp for tps in partitions.values() for tp in tps]
        if not every:
            return {}
        try:
            return ask(every)
        except kafka.errors.BrokerResponseError:
            if len(partitions) == 1:
                raise
        ends: dict[TopicPartition, int] = {}
        for topic, tps in partitions.items():
            try:
                ends.update(ask(tps))
            except kafka.errors.BrokerResponseError as e:
                missing[topic] = f"Kafka at {bootstrap}: end offsets of topic {topic!r}: {_describe(e)}"
        return ends

    def _committed(
        self, admin: Admin, bootstrap: str, wanted: Mapping[str, list[TopicPartition]]
    ) -> dict[str, dict[TopicPartition, int] | str]:
        """Committed offsets per group (-1: none), in one call; a group-level error fails only that group (the
        batch is then asked again one group at a time)."""
        if not wanted:
            return {}
        try:
            return {g: _offsets(o) for g, o in admin.list_group_offsets(dict(wanted)).items()}
        except kafka.errors.BrokerResponseError:
            if len(wanted) == 1:
                raise
        out: dict[str, dict[TopicPartition, int] | str] = {}
        for group, tps in wanted.items():
            try:
                out.update({g: _offsets(o) for g, o in admin.list_group_offsets({group: tps}).items()})
            except kafka.errors.BrokerResponseError as e:
                out[group] = f"Kafka at {bootstrap}: offsets of group {group!r}: {_describe(e)}"
        return out

    def _lag(
        self,
        tps: list[TopicPartition],
        ends: Mapping[TopicPartition, int],
        committed: Mapping[TopicPartition, int],
    ) -> tuple[int, dict[str, float]]:
        total = with_lag = uncommitted = 0
        for tp in tps:
            end = ends.get(tp)
            if end is None:
                continue  # KEDA: a partition missing from the end-offset answer counts 0
            done = committed.get(tp, -1)
            if done < 0:
                uncommitted += 1
                lag = 1 if self.offset_reset == "latest" else end
            else:
                lag = max(0, end - done)
            total += lag
            with_lag += lag > 0
        series = {
            "partitions": float(len(tps)),
            "partitionsWithLag": float(with_lag),
            "uncommittedPartitions": float(uncommitted),
        }
        return total, series


def _offsets(raw: Mapping[Any, Any]) -> dict[TopicPartition, int]:
    return {tp: int(getattr(o, "offset", o)) for tp, o in raw.items()}


def _describe(e: BaseException, limit: int = 300) -> str:
    """The exception's name and message, cut at `limit` characters (kafka-python lists every partition)."""
    text = str(e)
    name = type(e).__name__
    text = text if name in text else f"{name}: {text}" if text else name
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _close(c: _Cluster) -> None:
    if c.admin is not None:
        try:
            c.admin.close()
        except Exception:  # closing a broken client: nothing more to do
            log.debug("closing a Kafka admin client failed", exc_info=True)
        c.admin = None
