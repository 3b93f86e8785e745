"""A run's summary: loop timing, link counters, safety stops, the stop, and (simulated robots)
the distance walked by ground truth; format_summary is the human version printed at the end."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from simreal.deploy.runtime import Runtime


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def summarize(rt: Runtime) -> dict:
    st = rt.stats
    periods = np.diff(st.starts).tolist() if len(st.starts) > 1 else []
    ms = lambda v: None if v is None else round(v * 1e3, 4)    # noqa: E731
    counters = rt.driver.counters.as_dict() if getattr(rt.driver, "counters", None) else {}
    out: dict[str, Any] = {
        "robot": rt.plan.robot,
        "cycles": len(st.starts),
        "period_nominal_ms": ms(rt.period),
        "period_ms": {"p50": ms(percentile(periods, 50)), "p99": ms(percentile(periods, 99)),
                      "max": ms(max(periods) if periods else None)},
        "read_ms": {"p50": ms(percentile(st.read_s, 50)), "p99": ms(percentile(st.read_s, 99))},
        "send_ms": {"p50": ms(percentile(st.send_s, 50)), "p99": ms(percentile(st.send_s, 99))},
        "infer_ms": {"p50": ms(percentile(st.infer_s, 50)), "p99": ms(percentile(st.infer_s, 99))},
        "overruns": st.overruns,
        "missed_deadlines": st.missed_deadlines,
        "failed_cycles": st.failed_cycles,
        "retries": counters.get("retries", 0),
        "errors": dict(st.errors),
        "policy_calls": st.policy_calls,
        "commands_sent": st.commands_sent,
        "rate_limited_cycles": st.rate_limited,
        "heading_hold": rt.heading_hold.gain if rt.heading_hold.active else 0.0,
        "clamped_cycles": st.clamped,
        "end": rt.end_reason,
        "policy_s": (round((rt.policy_slots[1] - rt.policy_slots[0] + 1) * rt.period, 4)
                     if rt.policy_slots else 0.0),
        "safe_stops": [{"cause": t.cause, "detail": t.detail, "t": round(t.t, 4), "cycle": t.cycle}
                       for t in rt.latch.trips],
        "stop": rt.stop_result,
        "link": counters,
    }
    if rt.truth_start is not None and rt.truth_end is not None:
        p0, p1 = np.asarray(rt.truth_start.base_pos), np.asarray(rt.truth_end.base_pos)
        out["distance_m"] = round(float(np.hypot(*(p1 - p0)[:2])), 4)
        out["forward_m"] = round(float(p1[0] - p0[0]), 4)
        out["fallen"] = bool(rt.truth_end.fallen)
    return out


def format_summary(s: dict) -> str:
    """The human summary printed at the end of a run."""
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} ms"

    pm = s["period_ms"]
    lines = [f"robot {s['robot']}: {s['cycles']} cycles, ended by {s['end'] or '?'}",
             f"period (nominal {s['period_nominal_ms']:g} ms): p50 {ms(pm['p50'])}, p99 {ms(pm['p99'])}, "
             f"max {ms(pm['max'])}",
             f"round trip: read p50 {ms(s['read_ms']['p50'])}, command p50 {ms(s['send_ms']['p50'])}; "
             f"inference p50 {ms(s['infer_ms']['p50'])}",
             f"overruns {s['overruns']} (missed deadlines {s['missed_deadlines']}), failed cycles "
             f"{s['failed_cycles']}, retries {s['retries']}",
             f"policy cycles held back by the change limit: {s['rate_limited_cycles']} of {s['policy_calls']}"
             f" (the training env applies the same limit), clipped to joint limits: {s['clamped_cycles']}",
             "heading hold: " + (f"gain {s['heading_hold']:g} (the yaw command steers back to the starting heading)"
                                 if s.get("heading_hold") else "off"),
             "errors: " + (", ".join(f"{k} {v}" for k, v in sorted(s["errors"].items())) or "none")]
    if s["safe_stops"]:
        lines.append("safe stops: " + "; ".join(f"{t['cause']} at cycle {t['cycle']} ({t['detail']})"
                                                for t in s["safe_stops"]))
    else:
        lines.append("safe stops: none")
    stop = s.get("stop")
    if stop:
        lines.append(f"stop: {'torque off confirmed' if stop['confirmed'] else 'NOT confirmed'} in "
                     f"{stop['time_s'] * 1e3:.0f} ms" + (f" ({stop['note']})" if stop.get("note") else ""))
    if "distance_m" in s:
        lines.append(f"distance walked (mock ground truth): {s['distance_m']:.3f} m "
                     f"(forward {s['forward_m']:+.3f} m){', FELL' if s['fallen'] else ''}")
    return "\n".join(lines)


