"""simreal: train legged-robot policies in MuJoCo, export them, run them over a serial link."""
from __future__ import annotations

__version__ = "0.1.0"


def _register_envs() -> None:
    # Importing simreal makes `gymnasium.make("simreal/Quadruped-v0")` work.
    try:
        from simreal.envs.registration import register_all
    except ImportError:  # gymnasium missing: the deploy-only install path still imports.
        return
    register_all()


_register_envs()
