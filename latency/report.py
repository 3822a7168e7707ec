"""The lab's outputs: a JSON report, a percentile table for the terminal, PNG plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streaming.events import Final, Word

from .metrics import (
    PERCENTILES,
    Budget,
    LevelSummary,
    StreamTrace,
    after_eof_latency,
    endpoint_latency,
    final_latency,
    hypothesis_timeline,
    partial_delays,
    time_to_first_partial,
)

__all__ = ["LevelResult", "Report", "format_table", "write_plots"]


@dataclass
class LevelResult:
    summary: LevelSummary
    traces: list[StreamTrace]
    budget_failures: list[str]

    @property
    def holds(self) -> bool:
        return not self.budget_failures


@dataclass
class Report:
    server: str
    protocol: str
    audio_path: str
    audio_seconds: float
    speech_end: float
    reference: Sequence[Word]
    reference_model: str | None
    budget: Budget
    client: dict[str, Any]
    levels: list[LevelResult] = field(default_factory=list)
    capacity: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "protocol": self.protocol,
            "audio": {"path": self.audio_path, "seconds": round(self.audio_seconds, 3),
                      "speech_end_s": round(self.speech_end, 3)},
            "reference": {
                "model": self.reference_model,
                "text": " ".join(w.text for w in self.reference),
                "words": [_word(w) for w in self.reference],
            },
            "budget": asdict(self.budget),
            "client": self.client,
            "capacity": self.capacity,
            "levels": [
                {
                    "concurrency": level.summary.concurrency,
                    "within_budget": level.holds,
                    "budget_failures": level.budget_failures,
                    "summary": asdict(level.summary),
                    "streams": [self._stream_json(t) for t in level.traces],
                }
                for level in self.levels
            ],
        }

    def _stream_json(self, trace: StreamTrace) -> dict[str, Any]:
        timeline = hypothesis_timeline(trace.events)
        return {
            "client": trace.client,
            "status": trace.status,
            "error": trace.error,
            "blocks_sent": trace.blocks_sent,
            "replies": trace.replies,
            "send_lateness_s": round(trace.send_lateness, 4),
            "eof_s": trace.eof_t,
            "closed_s": trace.closed_t,
            "time_to_first_partial_s": time_to_first_partial(trace.events),
            "final_latency_s": final_latency(trace.events, self.speech_end),
            "endpoint_latency_s": endpoint_latency(trace.events, self.speech_end, trace.eof_t),
            "after_eof_latency_s": after_eof_latency(trace.events, trace.eof_t),
            "partial_delays_s": [None if d is None else round(d, 4)
                                 for d in partial_delays(timeline, self.reference)],
            "events": [
                {"t": round(e.t, 4), "type": "final" if isinstance(e.event, Final) else "partial",
                 "text": e.event.text}
                for e in trace.events
            ],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")


def _word(w: Word) -> dict[str, Any]:
    return {"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
            "conf": round(w.confidence, 4)}


def _triple(stats: dict[str, float | None]) -> str:
    values = [stats.get(f"p{q}") for q in PERCENTILES]
    if all(v is None for v in values):
        return "-"
    return "/".join("-" if v is None else f"{v:.2f}" for v in values)


def format_table(levels: Sequence[LevelResult], budget: Budget) -> str:
    """One row per concurrency level; latencies in seconds as p50/p90/p99."""
    q = "/".join(f"p{p}" for p in PERCENTILES)
    header = ["streams", "ok", "failed", "dropped", f"first partial {q}", f"partial delay {q}",
              f"final latency {q}", f"endpoint final {q}", f"after eof {q}", f"reply lag {q}",
              "RTF", "cRTF", "revised", "budget"]
    rows = [header]
    levels = sorted(levels, key=lambda lv: lv.summary.concurrency)
    for level in levels:
        s = level.summary
        rows.append([
            str(s.concurrency),
            str(s.streams - s.failed - s.dropped),
            str(s.failed),
            str(s.dropped),
            _triple(s.time_to_first_partial),
            _triple(s.partial_delay),
            _triple(s.final_latency),
            _triple(s.endpoint_latency),
            _triple(s.after_eof_latency),
            _triple(s.reply_lag),
            "-" if s.rtf is None else f"{s.rtf:.3f}",
            "-" if s.compute_rtf is None else f"{s.compute_rtf:.3f}",
            "-" if s.revision_rate is None else f"{100 * s.revision_rate:.0f}%",
            "ok" if level.holds else "MISS",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("(endpoint final: end of speech -> the endpoint's final, before eof; needs trailing silence, "
                 "--trailing-silence-s; after eof: the client's eof -> the last final, when that waited for eof)")
    lines.append("(RTF: wall/audio seconds of the same streams sent flat out; cRTF: the server's "
                 "forward+decode seconds per audio second during the real-time run, from its /metrics)")
    lines.append(
        f"(seconds; budget: p{budget.percentile} partial delay <= {budget.partial_s:g} s, "
        f"p{budget.percentile} final latency <= {budget.final_s:g} s, "
        f"at most {budget.max_failures} failed streams)"
    )
    for level in levels:
        late = level.summary.send_lateness_max
        if late > 0.25:
            lines.append(f"  {level.summary.concurrency} streams: warning: the clients fell up to "
                         f"{late:.2f} s behind real time (this machine is busy); latencies include that")
        for reason in level.budget_failures:
            lines.append(f"  {level.summary.concurrency} streams: {reason}")
        for error in level.summary.errors[:3]:
            lines.append(f"  {level.summary.concurrency} streams: error: {error}")
    return "\n".join(lines)


def write_plots(report: Report, out_dir: Path) -> list[Path]:
    """latency_vs_concurrency.png and timeline.png (matplotlib, Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    levels = sorted(report.levels, key=lambda lv: lv.summary.concurrency)
    budget = report.budget
    key = f"p{budget.percentile}"

    fig, (ax, ax_rtf) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(3, 1))
    xs = [lv.summary.concurrency for lv in levels]
    for label, attr, style in (
        ("partial delay", "partial_delay", "-o"),
        ("final latency", "final_latency", "-s"),
        ("first partial", "time_to_first_partial", "-^"),
        ("reply lag", "reply_lag", "-x"),
    ):
        for q, alpha in (("p50", 0.45), (key, 1.0)):
            ys = [getattr(lv.summary, attr).get(q) for lv in levels]
            if any(y is not None for y in ys):
                ax.plot(xs, [float("nan") if y is None else y for y in ys], style, alpha=alpha,
                        label=f"{label} {q}")
    ax.axhline(budget.partial_s, color="tab:blue", linestyle="--", linewidth=1, label="partial budget")
    ax.axhline(budget.final_s, color="tab:orange", linestyle="--", linewidth=1, label="final budget")
    if report.capacity:
        ax.axvline(report.capacity, color="green", linestyle=":", label=f"capacity {report.capacity}")
    ax.set_ylabel("seconds")
    ax.set_title(f"Latency vs concurrency ({report.protocol} @ {report.server})")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    for attr, label, color in (("rtf", "RTF (flat-out)", "tab:purple"),
                               ("compute_rtf", "compute RTF (server /metrics)", "tab:brown")):
        rtfs = [getattr(lv.summary, attr) for lv in levels]
        if any(r is not None for r in rtfs):
            ax_rtf.plot(xs, [float("nan") if r is None else r for r in rtfs], "-o", color=color, label=label)
    bad = [lv.summary.failed + lv.summary.dropped for lv in levels]
    ax_rtf.bar(xs, [b / max(1, lv.summary.streams) for b, lv in zip(bad, levels, strict=True)],
               color="tab:red", alpha=0.4, label="failed/dropped fraction")
    ax_rtf.set_xlabel("concurrent real-time streams")
    ax_rtf.set_xticks(xs)
    ax_rtf.legend(fontsize=7)
    ax_rtf.grid(alpha=0.3)
    if len(xs) > 2 and max(xs) / max(1, min(xs)) >= 8:
        ax.set_xscale("log", base=2)
    fig.tight_layout()
    path = out_dir / "latency_vs_concurrency.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    # Timelines: lag as it builds up, and each word's delay.  The busiest level
    # shows how the server fails; the capacity level what users get at the limit.
    if levels:
        path = out_dir / "timeline.png"
        _timeline_plot(plt, report, levels[-1], path)
        written.append(path)
        at_capacity = [lv for lv in levels if lv.summary.concurrency == report.capacity]
        if at_capacity and at_capacity[0] is not levels[-1]:
            path = out_dir / "timeline_capacity.png"
            _timeline_plot(plt, report, at_capacity[0], path)
            written.append(path)
    return written


def _timeline_plot(plt: Any, report: Report, level: LevelResult, path: Path) -> None:
    budget = report.budget
    fig, (ax_w, ax_lag, ax_d) = plt.subplots(
        3, 1, figsize=(10, 8), sharex=True, height_ratios=(1, 3, 3)
    )
    for w in report.reference:
        ax_w.barh(0, w.end - w.start, left=w.start, height=0.6, color="tab:gray", alpha=0.5)
        label = w.text if len(w.text) <= 12 else w.text[:11] + "~"
        ax_w.text((w.start + w.end) / 2, 0, label, ha="center", va="center", fontsize=7)
    ax_w.axvline(report.speech_end, color="black", linestyle=":")
    ax_w.set_yticks([])
    ax_w.set_title(f"Latency timeline: {level.summary.concurrency} concurrent streams "
                   f"({report.protocol} @ {report.server})", fontsize=10)
    ax_w.text(0.0, 1.02, "reference words (offline decode)", transform=ax_w.transAxes, fontsize=7)
    for trace in level.traces:
        if trace.lag_times:
            ax_lag.plot(trace.lag_times, trace.reply_lags, "-", linewidth=1, alpha=0.7)
        if trace.status != "ok":
            continue
        delays = partial_delays(hypothesis_timeline(trace.events), report.reference)
        points = [(w.end, d) for w, d in zip(report.reference, delays, strict=True) if d is not None]
        if points:
            ax_d.plot(*zip(*points, strict=True), "o-", markersize=3, alpha=0.7)
        for e in trace.events:
            if isinstance(e.event, Final) and e.event.text.strip():
                ax_d.axvline(e.t, color="tab:green", alpha=0.2)
    lag_what = "block sent -> reply" if report.protocol == "vosk" else "audio at result end sent -> result"
    ax_lag.set_ylabel(f"reply lag, s\n({lag_what})", fontsize=8)
    ax_lag.axhline(budget.partial_s, color="tab:blue", linestyle="--", linewidth=1)
    ax_lag.grid(alpha=0.3)
    ax_d.axhline(budget.partial_s, color="tab:blue", linestyle="--", linewidth=1, label="partial budget")
    ax_d.axvline(report.speech_end, color="black", linestyle=":", label="end of speech")
    ax_d.set_ylabel("partial delay, s\n(at the word's end; green: finals)", fontsize=8)
    ax_d.set_xlabel("seconds since stream start (= audio time at real-time pace); one line per stream")
    ax_d.legend(fontsize=7)
    ax_d.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
