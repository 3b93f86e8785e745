"""Run every drill, hold the figures against docs/faults.md's targets, and print them.

`run_all(quick)` returns one JSON-able dict: each layer's records and a `targets` list of
{target, figure, met}. --quick keeps every drill but the real-time slow device (its figure is the
host's scheduling as much as ours) and cuts the counts (about half a minute on two cores); the full run reaches the counts the targets name (10^6 mutants, 10^4 late replies
and slow cycles, 100 kills of `simreal train`) and takes several minutes.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from simreal.faults.bench import T
from simreal.faults.hostkill import DAMP_S, WATCHDOG_MS

# Counts: (quick, full).
COUNTS = {"codec_scale": (0.02, 1.0), "link": (500, 10_000), "slow": (2000, 10_000), "stop_trials": (3, 20),
          "log_kills": (2, 20), "train_kills": (2, 100), "host_kills": (1, 5)}


def run_all(quick: bool = False, seed: int = 0, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    from simreal.faults import codec, hostkill, link, persistence, stops

    n = {k: v[0] if quick else v[1] for k, v in COUNTS.items()}
    out: dict[str, Any] = {"quick": quick, "seed": seed, "counts": n, "seconds": {}}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        progress(f"{name} ...")
        t = time.perf_counter()
        res = fn()
        out["seconds"][name] = round(time.perf_counter() - t, 1)
        return res

    out["codec"] = timed("codec", lambda: codec.run(n["codec_scale"], seed))
    out["link"] = timed("link", lambda: [link.drill(f, 0.1, n["link"], seed=seed) for f in link.IDENTITIES])
    out["wrap"] = timed("tag wrap", lambda: link.drill("dup", 0.1, 100, seed=seed, first_tag=65500))
    out["slow_link"] = timed("slow link", lambda: link.slow_link(n["slow"], seed))
    out["slow"] = None if quick else timed("slow device", lambda: link.slow_device(n["slow"], seed))
    out["stops"] = timed("safety stops", lambda: stops.run(n["stop_trials"]))
    with tempfile.TemporaryDirectory(prefix="simreal-faults-") as tmp:
        out["log_kills"] = timed("log kills", lambda: persistence.log_kills(n["log_kills"], Path(tmp), seed))
        out["train_kills"] = timed("train kills", lambda: persistence.train_kills(n["train_kills"], Path(tmp), seed))
        out["host_kills"] = timed("host kills", lambda: hostkill.host_kills(n["host_kills"], Path(tmp), seed))
    out["targets"] = targets(out)
    return _plain(out)


def _plain(x: Any) -> Any:
    if dataclasses.is_dataclass(x):
        d = {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if hasattr(type(x), "passed"):
            d["passed"] = x.passed
        return d
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """docs/faults.md's headline targets, each with the figure this run measured."""
    codec, link, stops_ = r["codec"], r["link"], r["stops"]
    mutants = sum(c.mutants for c in codec)
    false = sum(c.false_accepts for c in codec)
    untyped = sum(c.untyped for c in codec)
    late = next(x for x in link if x.fault == "late")
    wrong = sum(x.wrong for x in link) + r["wrap"].wrong
    identities = [c for x in link for c in x.checks]
    confirmable = [s for s in stops_ if s.confirmable]
    safe_max = max((s.safe_ms.get("max", math.inf) for s in confirmable), default=math.inf)
    off_max = max((s.off_ms.get("max", math.inf) for s in confirmable), default=math.inf)
    lk, tk, hk = r["log_kills"], r["train_kills"], r["host_kills"]
    sl, slow = r["slow_link"], r["slow"]
    lost_events = sum(k.events_lost + k.cycles_lost for k in lk)
    hk_off = [k.off_ms for k in hk if k.off_ms is not None]
    return [
        _t(f"0 false accepts over >= 10^6 mutated frames (here {mutants:,})", f"{false} false, {untyped} untyped",
           false == 0 and untyped == 0, mutants >= 10**6),
        _t(f"0 stale replies accepted over >= 10^4 late-reply transactions (here {late.transactions:,})",
           f"{wrong} accepted from another cycle", wrong == 0, late.transactions >= 10**4),
        _t("every injected link fault counted exactly (F10)",
           f"{sum(c.ok for c in identities)}/{len(identities)} identities hold; tags wrap 65535 -> 1: "
           f"{'ok' if r['wrap'].passed else 'FAILED'}", all(c.ok for c in identities) and r["wrap"].passed),
        _t("every safety fault: the right stop, a safe mode (DAMPING or torque off) confirmed within one "
           "control period of detection", f"{sum(s.detected for s in stops_)}/{sum(s.trials for s in stops_)} "
           f"right cause; safe confirmed <= {safe_max:g} ms", all(s.passed for s in stops_)),
        _t("torque off confirmed by the host (not the watchdog) after every safety fault the link survives",
           f"{sum(s.confirmed for s in confirmable)}/{sum(s.trials for s in confirmable)} confirmed, "
           f"<= {off_max:g} ms after detection (200 ms of it is the stop's damping, by design)",
           all(s.confirmed == s.trials for s in confirmable)),
        _t(f"0 false link faults at 50-95% of the timeout over >= 10^4 cycles (here {sl.transactions:,}, FakeClock)",
           f"{sl.failed} failed, {sl.retries} retries, replies {sl.rtt_p50_s * 1e3:.2f} (median) to "
           f"{sl.rtt_max_s * 1e3:.2f} ms of {sl.timeout_s * 1e3:.1f} ms", sl.failed == 0 and sl.retries == 0,
           sl.transactions >= 10**4),
        *([] if slow is None else [
            _t(f"the same in real time: a mock process, host scheduling included (here {slow.transactions:,})",
               f"{slow.failed} failed, {slow.retries} retries, median reply {slow.rtt_p50_s * 1e3:.2f} ms",
               slow.failed == 0, slow.transactions >= 10**4)]),
        _t(f"0 lost log events on SIGKILL (here {len(lk)} kills)", f"{lost_events} lost", lost_events == 0),
        _t(f"0 corrupted latest checkpoints over 100 kill-during-save runs of `simreal train` (here {tk.kills})",
           f"{tk.corrupted_latest} corrupted, {tk.landed_in_save} kills inside a save, "
           f"{tk.resumes_failed} resumes failed, final resume exit {tk.final_exit}",
           tk.corrupted_latest == 0 and tk.resumes_failed == 0 and tk.final_exit == 0, tk.kills >= 100),
        _t(f"C9 SIGKILL of the host: the robot's watchdog damps, then cuts torque (here {len(hk)} kills, "
           f"watchdog {WATCHDOG_MS} ms + damp {DAMP_S * 1e3:g} ms)",
           f"torque off {min(hk_off, default=math.nan):g}-{max(hk_off, default=math.nan):g} ms after the kill",
           len(hk_off) == len(hk) and all(k.watchdog_trips == 1 for k in hk)
           and max(hk_off) <= WATCHDOG_MS + DAMP_S * 1e3 + 2 * T * 1e3),
        _t("no non-finite value reaches a motor command", f"{sum(s.non_finite_commands for s in stops_)} commands",
           sum(s.non_finite_commands for s in stops_) == 0),
    ]


def _t(target: str, figure: str, met: bool, full_count: bool = True) -> dict[str, Any]:
    return {"target": target, "figure": figure, "met": bool(met), "full_count": bool(full_count)}


def passed(report: dict[str, Any]) -> bool:
    return all(t["met"] for t in report["targets"])


def _ms(d: dict[str, float]) -> str:
    return "-" if not d else f"{d['p50']:g}/{d['p95']:g}/{d['max']:g}"


def format_text(r: dict[str, Any]) -> str:
    """The report as plain text (markdown tables: BENCHMARKS.md keeps it as printed)."""
    lines = [f"simreal faults{' --quick' if r['quick'] else ''} (seed {r['seed']})", "",
             "| codec class (F1-F7) | mutants | rejected | false accepts | lost next frame | untyped |",
             "|---|---:|---:|---:|---:|---:|"]
    for c in r["codec"]:
        lines.append(f"| {c['cls']} | {c['mutants']:,} | {c['rejected']:,} | {c['false_accepts']} | {c['lost']} "
                     f"| {c['untyped']} |")
    lines += ["", "| link fault (F10, F11) at 10% | cycles | injected | answered | lost cycles | wrong data "
                  "| identities |", "|---|---:|---:|---:|---:|---:|---|"]
    for x in r["link"] + [r["wrap"]]:
        name = x["fault"] + (" (tags from 65500)" if x is r["wrap"] else "")
        checks = "; ".join(f"{c['what']}: {c['expected']} = {c['got']}" if c["expected"] == c["got"] else
                           f"{c['what']}: {c['expected']} != {c['got']} FAILED" for c in x["checks"])
        lines.append(f"| {name} | {x['transactions']:,} | {sum(x['injected'].values()):,} | {x['ok']:,} "
                     f"| {x['failed']} | {x['wrong']} | {checks} |")
    lines.append("")
    for s, how in ((r["slow_link"], "FakeClock"), (r["slow"], "real time")):
        if s is not None:
            lines.append(f"T3 slow device ({how}, replies at 50-95% of the {s['timeout_s'] * 1e3:.1f} ms attempt "
                         f"timeout): {s['transactions']:,} cycles, {s['failed']} failed, {s['retries']} retries, "
                         f"{s['late_accepted']} late replies accepted, reply p50 {s['rtt_p50_s'] * 1e3:.2f} ms, "
                         f"max {s['rtt_max_s'] * 1e3:.2f} ms")
    lines += ["",
              "| safety fault | cause | trials | detected | torque off confirmed | detect ms p50/p95/max "
              "| safe mode ms | torque off ms | non-finite commands |", "|---|---|---:|---:|---:|---|---|---|---:|"]
    for x in r["stops"]:
        conf = f"{x['confirmed']}" if x["confirmable"] else "n/a (link gone: robot watchdog)"
        lines.append(f"| {x['row']} {x['name']} | {x['cause']} | {x['trials']} | {x['detected']} | {conf} "
                     f"| {_ms(x['detect_ms'])} | {_ms(x['safe_ms'])} | {_ms(x['off_ms'])} | {x['non_finite_commands']} |")
    lines.append("(FakeClock, lockstep mock: times are exact and the same at every injection cycle; detect is "
                 "from injection, safe mode and torque off from detection)")
    periods = [p for k in r["log_kills"] for p in k["periods_ms"]]
    lk = r["log_kills"]
    lines += ["", f"P4 SIGKILL of a real-time deploy: {len(lk)} kills, "
                  f"{sum(k['cycles_reported'] for k in lk)} cycles and {sum(k['events_reported'] for k in lk)} "
                  f"events reported written, {sum(k['cycles_lost'] for k in lk)} cycles and "
                  f"{sum(k['events_lost'] for k in lk)} events lost"]
    if periods:
        ps = sorted(periods)
        lines.append(f"loop period in those runs (real time, this machine): p50 {statistics.median(ps):.2f} ms, "
                     f"p99 {ps[min(len(ps) - 1, int(0.99 * len(ps)))]:.2f} ms, max {ps[-1]:.2f} ms over {len(ps)} cycles")
    tk = r["train_kills"]
    lines += [f"P1 SIGKILL of `simreal train` during a checkpoint save: {tk['kills']} kills, {tk['landed_in_save']} "
              f"inside a save, {tk['corrupted_latest']} corrupted latest, {tk['resumes_failed']} resumes failed, "
              f"final resume exit {tk['final_exit']}"]
    for k in r["host_kills"]:
        lines.append(f"C9 SIGKILL of a real-time deploy at cycle {k['killed_at_cycle']}: the robot's watchdog "
                     f"damped {k['damp_ms']} ms and cut torque {k['off_ms']} ms after the kill")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in r["targets"]:
        met = "yes" if t["met"] else "NO"
        if t["met"] and not t["full_count"]:
            met += " (count below the target's: run without --quick)"
        lines.append(f"| {t['target']} | {t['figure']} | {met} |")
    lines.append("")
    lines.append("seconds: " + ", ".join(f"{k} {v:g}" for k, v in r["seconds"].items()))
    return "\n".join(lines)
