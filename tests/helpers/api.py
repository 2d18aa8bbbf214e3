"""Helpers for tests that talk to a live server: wait for a job, check an error response."""

from __future__ import annotations

import time

import httpx


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 900) -> dict:
    """The job once it left queued/running; fails the test after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    """The body of an RFC 9457 problem response with this status and memex error code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["detail"]
    return body
