"""The safe stop: DAMP (kept alive once a period), then TORQUE 0 until a reply confirms it, bounded in time.

Bounded by stop_timeout_s plus one transaction. Confirmed means the robot's reply shows TORQUE_ON
cleared, not that the request was sent. If the link is gone the stop cannot be confirmed; the
robot's own watchdog (INFO.watchdog_ms) is then what makes it safe, and the result says so.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from simreal import protocol as P
from simreal.deploy.driver import DriverError, LinkLost

if TYPE_CHECKING:
    from simreal.deploy.runtime import Runtime


def safe_stop(rt: Runtime) -> dict:
    """Stop `rt`'s robot; returns {cause, confirmed, time_s, steps, note} (also logged)."""
    d, clock, cfg = rt.driver, rt.clock, rt.config
    t_begin = clock.now()
    deadline = t_begin + cfg.stop_timeout_s
    cause = rt.latch.latched_by.cause if rt.latch.latched_by else rt.end_reason
    rt.event("stopping", cause=cause)
    steps: list[str] = []
    confirmed = False
    lost = False
    try:
        # DAMP, repeated once a period for damp_s: a silent link for that long would look like a
        # crashed host to the robot's watchdog (often about as long), which must fire only for one.
        damp_end = min(clock.now() + cfg.damp_s, deadline)
        d.damp()
        steps.append("damp")
        while clock.now() + rt.period < damp_end:
            clock.sleep_until(clock.now() + rt.period)
            d.damp()
        clock.sleep_until(damp_end)
    except LinkLost as exc:
        lost = True
        steps.append(f"damp failed: {exc}")
    except (DriverError, P.ProtocolError) as exc:
        steps.append(f"damp failed: {type(exc).__name__}: {exc}")
    attempts = 0
    while not lost and not confirmed and (attempts == 0 or clock.now() < deadline):
        attempts += 1
        try:
            reply = d.disable_torque()
            confirmed = not reply.torque_on
            steps.append("torque off confirmed" if confirmed else f"torque off not confirmed (status {reply.status:#x})")
        except LinkLost as exc:
            lost = True
            steps.append(f"torque off failed: {exc}")
        except (DriverError, P.ProtocolError) as exc:
            steps.append(f"torque off failed: {type(exc).__name__}: {exc}")
        if not confirmed:   # pace the retries: one per period, not a storm
            clock.sleep_until(min(clock.now() + rt.period, deadline))
    elapsed = clock.now() - t_begin
    if confirmed:
        rt.torque_enabled = False
    watchdog = rt.info.watchdog_ms if rt.info is not None else 0
    note = "" if confirmed else (f"not confirmed: the robot's watchdog ({watchdog} ms) must make it safe"
                                 if watchdog else "not confirmed and the robot declares no watchdog")
    result = {"cause": cause or "end", "confirmed": confirmed, "time_s": elapsed, "steps": steps, "note": note}
    rt.event("safe_stop" if rt.latch.safe else "stop", **result)
    return result
