"""One exit-code table for every `simreal` command, and the errors that map onto it.

A command signals bad input by raising a `UserError` (or a subclass: every loader's error is one),
and a missing system library by raising `MissingDependency`; `simreal.cli.main` turns either into
one line on stderr and its exit code. Tracebacks only with `--debug` or SIMREAL_DEBUG=1.
"""
from __future__ import annotations

EXIT_OK = 0                   # done
EXIT_SAFETY_STOP = 1          # deploy/demo: the run ended in a safety stop (torque off confirmed or watchdog)
EXIT_BAD_INPUT = 2            # refused or bad input: nothing was powered, nothing was written
EXIT_MISSING_DEPENDENCY = 3   # a system library is missing (the message names the package)
EXIT_INTERRUPTED = 130        # Ctrl-C / SIGTERM (a deploy still does its safe stop first)

EXIT_CODES_HELP = ("exit codes: 0 done, 1 a safety stop (deploy, demo), 2 refused or bad input (nothing "
                   "powered, nothing written), 3 a missing system dependency, 130 interrupted. "
                   "--debug or SIMREAL_DEBUG=1 shows tracebacks.")


class UserError(Exception):
    """Bad input or a refusal that the user can fix: reported as one line, exit 2."""

    exit_code = EXIT_BAD_INPUT


class MissingDependency(Exception):
    """A system library, or an optional Python package, is missing: the message says what to install. Exit 3."""

    exit_code = EXIT_MISSING_DEPENDENCY


# Python packages that only an extra installs: `pip install simreal` is the runtime alone
# (deploy, export --check); a command that needs more says which extra brings it (exit 3).
EXTRA_OF_MODULE = {
    "mujoco": "sim", "gymnasium": "sim", "imageio": "sim", "imageio_ffmpeg": "sim", "tqdm": "sim",
    "torch": "train", "stable_baselines3": "train", "sb3_contrib": "train", "onnx": "train",
    "tensorboard": "train", "matplotlib": "plot", "ray": "cluster", "optuna": "cluster",
}


# Commands whose whole stack is the `train` extra (which brings `sim` and `plot`): name that one
# at once rather than one missing package after another.
TRAIN_COMMANDS = {"train", "eval", "export", "study", "runs", "render", "view"}


def missing_extra(exc: ModuleNotFoundError, command: str = "") -> MissingDependency | None:
    """A MissingDependency naming the extra that installs `exc`'s module, if an extra does."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    if command in TRAIN_COMMANDS and extra in ("sim", "plot"):
        extra = "train"
    return MissingDependency(f"needs the Python package {top!r}, which this install lacks: "
                             f"pip install 'simreal[{extra}]' (or 'simreal[all]')")


def require_finite(value: float, what: str) -> float:
    """`value` as a float, refused (naming `what`) if it is NaN or infinite."""
    import math

    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what}: not a number: {value!r}") from None
    if not math.isfinite(f):
        raise UserError(f"{what}: must be a finite number, got {value!r}")
    return f
