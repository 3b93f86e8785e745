"""`simreal rollout | view | render`: look at a robot's environment without training."""
from __future__ import annotations

import argparse
import os
import sys

GL_HELP = ("No OpenGL backend for offscreen rendering. On a headless Linux machine install OSMesa "
           "(Debian/Ubuntu: `apt-get install libosmesa6`) and set MUJOCO_GL=osmesa, or use EGL "
           "with a GPU (MUJOCO_GL=egl). Original error: {err}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="run a randomized rollout on a robot and print what happened")
    p.add_argument("robot", nargs="?", default="quadruped")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-randomize", action="store_true")
    p.add_argument("--policy", choices=["random", "zero"], default="random",
                   help="random actions, or zero (hold the default pose)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_rollout)

    p = sub.add_parser("view", help="open the interactive MuJoCo viewer on a robot (needs a display)")
    p.add_argument("robot", nargs="?", default="quadruped")
    p.set_defaults(func=run_view)

    p = sub.add_parser("render", help="write a short offscreen video of a robot")
    p.add_argument("robot", nargs="?", default="quadruped")
    p.add_argument("--out", default="clip.mp4")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", choices=["random", "zero"], default="zero")
    p.set_defaults(func=run_render)


def run_rollout(args: argparse.Namespace) -> int:
    import json

    from simreal.envs.rollout import rollout

    summary = rollout(args.robot, steps=args.steps, seed=args.seed, randomize=not args.no_randomize,
                      policy=args.policy)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{args.robot}: {summary['steps']} steps, {summary['episodes']} episodes, "
          f"{summary['falls']} falls, mean forward velocity {summary['mean_forward_velocity']:+.3f} m/s, "
          f"mean reward {summary['mean_reward']:+.3f}, non-finite observations: {summary['nonfinite']}")
    print("mean reward terms: " + ", ".join(f"{k} {v:+.3f}" for k, v in summary["mean_terms"].items()))
    first = summary["first_randomization"]
    print("first episode randomization: " + ", ".join(
        f"{k}={v if not isinstance(v, float) else round(v, 3)}" for k, v in first.items()
        if not isinstance(v, (list, dict))))
    return 0


def ensure_gl_backend() -> None:
    """Choose a headless backend before mujoco is imported, if the user has not chosen one."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "osmesa"
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")


def run_render(args: argparse.Namespace) -> int:
    ensure_gl_backend()
    from simreal.envs.rollout import render_video

    try:
        frames = render_video(args.robot, args.out, seconds=args.seconds, seed=args.seed, policy=args.policy)
    except Exception as err:  # noqa: BLE001 - any GL failure gets the same advice
        if _looks_like_gl_error(err):
            print(GL_HELP.format(err=err), file=sys.stderr)
            return 3
        raise
    print(f"wrote {args.out} ({frames} frames)")
    return 0


def _looks_like_gl_error(err: Exception) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return any(k in text for k in ("gl", "osmesa", "egl", "display", "context", "glfw"))


def run_view(args: argparse.Namespace) -> int:
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        print("simreal view needs a display (no DISPLAY is set). For a video without a display use "
              "`simreal render ROBOT --out clip.mp4`.", file=sys.stderr)
        return 3
    import mujoco.viewer

    from simreal.envs.locomotion import LocomotionEnv

    env = LocomotionEnv(args.robot, randomize=False)
    env.reset(seed=0)
    mujoco.viewer.launch(env.sim.model, env.sim.data)
    return 0
