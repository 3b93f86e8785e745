"""`simreal robots`: list the robots found, or show one robot's validated spec."""
from __future__ import annotations

import argparse
import json

from simreal.errors import EXIT_BAD_INPUT, UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robots", help="list robots, or `robots show NAME` to print one spec")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="robot name (for show)")
    p.add_argument("--paths", action="store_true", help="print the robot search path")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simreal.robot.registry import list_robots, robot_dir, search_path
    from simreal.robot.spec import RobotSpecError, load_robot

    if args.paths:
        for pth in search_path():
            print(pth)
        return 0
    if args.action == "show":
        if not args.name:
            raise UserError("robots show: give a robot NAME (simreal robots lists them)")
        spec = load_robot(args.name)
        data = spec.model_dump(mode="json")
        data["folder"] = str(spec.root)
        data["spec_hash"] = spec.spec_hash
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            import yaml
            print(yaml.safe_dump(data, sort_keys=False))
        return 0
    rows, broken = [], []
    for name in list_robots():
        try:
            spec = load_robot(name)
        except RobotSpecError as e:       # one broken robot must not hide the others
            broken.append({"name": name, "error": str(e), "folder": str(robot_dir(name))})
            continue
        rows.append({"name": name, "joints": spec.n_joints, "rate_hz": round(1 / spec.control.period),
                     "description": spec.description, "folder": str(robot_dir(name))})
    if args.json:
        print(json.dumps(rows + [{**b, "broken": True} for b in broken], indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<12} {r['joints']:>2} joints  {r['rate_hz']:>3} Hz  {r['description']}")
        for b in broken:
            print(f"{b['name']:<12} BROKEN: {b['error']}")
    return EXIT_BAD_INPUT if broken else 0
