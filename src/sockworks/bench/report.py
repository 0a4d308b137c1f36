"""How a bench result is shown: a short human table, or one JSON document.

The JSON document is the stable interface (``bench compare`` and scripts read
it): ``requests_per_second``, ``latency_us`` with ``p50``/``p90``/``p99``/
``p99.9``/``max``/``mean``, ``errors`` by kind and ``errors_total``,
``rate_limited`` (UDP: requests the server dropped under its per-source
limit, from its counters; null when unknown), plus the run's parameters and
the machine's facts.
"""

from __future__ import annotations

from typing import Any

from sockworks.bench.histogram import DEFAULT_PERCENTILES
from sockworks.bench.runner import BenchConfig, BenchResult, describe_host

__all__ = ["format_duration", "format_result", "latency_summary", "result_document"]

_LABELS = {50.0: "p50", 90.0: "p90", 99.0: "p99", 99.9: "p99.9"}


def latency_summary(result: BenchResult) -> dict[str, float]:
    """Percentiles, max and mean in microseconds (0.1 µs resolution)."""
    histogram = result.histogram
    summary = {_LABELS[p]: round(v / 1000.0, 1)
               for p, v in histogram.percentiles(DEFAULT_PERCENTILES).items()}
    summary["max"] = round(histogram.max / 1000.0, 1)
    summary["mean"] = round(histogram.mean / 1000.0, 1)
    return summary


def result_document(config: BenchConfig, result: BenchResult) -> dict[str, Any]:
    spec = config.workload
    workload: dict[str, Any] = {"name": spec.name}
    if spec.name in ("kv", "resp"):
        workload.update(keys=spec.keys, value_size=spec.value_size, set_ratio=spec.set_ratio)
    elif spec.name == "echo":
        workload.update(value_size=spec.value_size, expect=spec.expect)
    else:
        workload.update(request_type=spec.request_type)
    return {
        "workload": workload,
        "target": {"host": config.host, "port": config.port},
        "connections": config.connections,
        "pipeline": config.pipeline,
        "idle": config.idle,
        "procs": config.procs,
        "duration": config.duration,
        "warmup": config.warmup,
        "requests": result.requests,
        "elapsed": round(result.elapsed, 6),
        "requests_per_second": round(result.requests_per_second, 1),
        "latency_us": latency_summary(result),
        "errors": dict(sorted(result.errors.items())),
        "errors_total": sum(result.errors.values()),
        "connected": result.connected,
        "idle_connected": result.idle_connected,
        "rate_limited": result.rate_limited,
        "host": describe_host(),
    }


def format_duration(microseconds: float) -> str:
    if microseconds >= 1_000_000:
        return f"{microseconds / 1_000_000:.2f} s"
    if microseconds >= 1000:
        return f"{microseconds / 1000:.2f} ms"
    return f"{microseconds:.0f} µs"


def format_result(config: BenchConfig, result: BenchResult) -> str:
    latency = latency_summary(result)
    idle = f" + {result.idle_connected:,}/{config.idle:,} idle" if config.idle else ""
    lines = [
        (f"{config.workload.name} on {config.host}:{config.port}: "
         f"{result.connected}/{config.connections} connections answered{idle}, "
         f"pipeline {config.pipeline}, "
         f"{config.procs} client process{'es' if config.procs > 1 else ''}"),
        f"  requests     {result.requests:,} in {result.elapsed:.2f} s",
        f"  throughput   {result.requests_per_second:,.0f} requests/s",
        "  latency      " + "  ".join(
            f"{name} {format_duration(latency[name])}"
            for name in ("p50", "p90", "p99", "p99.9", "max")),
    ]
    if result.errors:
        lines.append("  errors       " + ", ".join(
            f"{kind} {count:,}" for kind, count in sorted(result.errors.items())))
    else:
        lines.append("  errors       none")
    if config.workload.name == "udp":
        lines.append("  rate limited " + (
            "unknown (the server does not report it)" if result.rate_limited is None else
            f"{result.rate_limited:,} requests dropped by the server's per-source limit "
            "(its --rate/--burst); the client counts them as timeouts"))
    return "\n".join(lines)
