"""Prometheus metrics: request latency per route, search latency, corpus sizes, job counts.

Request metrics are counted as they happen. Sizes and job counts are read from
SQL and the index directories at scrape time, so every worker reports the same
truth. With several workers (``PROMETHEUS_MULTIPROC_DIR`` set by ``memex serve``)
the request metrics of all workers are summed from that directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from indexer.database import Job

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
REQUESTS = Counter("memex_http_requests", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("memex_http_request_duration_seconds", "HTTP request latency",
                    ["method", "route"], buckets=BUCKETS)
SEARCH = Histogram("memex_search_duration_seconds", "latency of search requests",
                   ["route"], buckets=BUCKETS)

router = APIRouter(tags=["health"])


def observe(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)
    if route.endswith("/search") and status < 400:
        SEARCH.labels(route).observe(seconds)


class StateCollector:
    """Gauges computed from the data directory and SQL when scraped."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        corpora = self.state.corpora
        passages = GaugeMetricFamily("memex_corpus_passages", "passages per corpus", labels=["corpus"])
        documents = GaugeMetricFamily("memex_corpus_documents", "documents per corpus",
                                      labels=["corpus"])
        size = GaugeMetricFamily("memex_index_bytes", "index size on disk", labels=["corpus"])
        version = GaugeMetricFamily("memex_corpus_version", "committed version", labels=["corpus"])
        for info in corpora.list():
            passages.add_metric([info.name], info.passages)
            documents.add_metric([info.name], info.documents)
            size.add_metric([info.name], info.bytes_on_disk)
            version.add_metric([info.name], info.version)
        jobs = GaugeMetricFamily("memex_jobs", "jobs by status", labels=["status"])
        with corpora.sessions() as s:
            counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        for status in ("queued", "running", "succeeded", "failed", "cancelled"):
            jobs.add_metric([status], counts.get(status, 0))
        yield from (passages, documents, size, version, jobs)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        live = CollectorRegistry()
        MultiProcessCollector(live)  # type: ignore[no-untyped-call]
    else:
        live = REGISTRY
    state = CollectorRegistry()
    state.register(StateCollector(request.app.state))
    return Response(generate_latest(live) + generate_latest(state), media_type=CONTENT_TYPE_LATEST)
