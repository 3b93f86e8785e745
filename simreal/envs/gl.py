"""Which OpenGL backend MuJoCo renders with: chosen once, the same way for every renderer.

MuJoCo reads MUJOCO_GL when it is first imported, and a backend whose library is missing makes
that import fail (MUJOCO_GL=osmesa without libOSMesa), so the choice is made before, by probing
each candidate in a short subprocess that renders one frame:

1. MUJOCO_GL set by the user: that backend, and only it;
2. a display (DISPLAY / WAYLAND_DISPLAY): GLFW, MuJoCo's default;
3. headless: EGL (Mesa renders it on the CPU with no extra install), then OSMesa.

None working is a `MissingDependency` (exit 3) naming the packages to install.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable

from simreal.errors import MissingDependency

HEADLESS = ("egl", "osmesa")
INSTALL_HINT = ("install an offscreen OpenGL library: EGL (Debian/Ubuntu: apt-get install libegl1 "
                "libgl1-mesa-dri) or OSMesa (apt-get install libosmesa6), or set MUJOCO_GL to a backend "
                "that works here")

_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
r = mujoco.Renderer(m, 16, 16)
d = mujoco.MjData(m)
r.update_scene(d)
assert r.render().shape == (16, 16, 3)
"""

Probe = Callable[[str], "str | None"]
_chosen: str | None = None


def probe(backend: str, timeout_s: float = 60.0) -> str | None:
    """None if MuJoCo renders a frame with `backend` in a fresh process, else the last error line."""
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"} | {"MUJOCO_GL": backend}
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                           timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"no frame within {timeout_s:g} s"
    if r.returncode == 0:
        return None
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit {r.returncode}"


def candidates(environ: dict[str, str] | None = None) -> list[str]:
    """The backends to try, in order (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("MUJOCO_GL"):
        return [env["MUJOCO_GL"].strip().lower()]
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return ["glfw"]
    return list(HEADLESS)


def choose_gl_backend(try_backend: Probe = probe, environ: dict[str, str] | None = None) -> str:
    """Pick the backend, put it in MUJOCO_GL for this process, and return it (cached).

    Call before the first `import mujoco` of a process that renders; afterwards the backend is
    fixed, and only what MuJoCo already chose can be checked. (`environ`: for tests.)
    """
    global _chosen
    if environ is None:
        if _chosen is not None:
            return _chosen
        environ = os.environ
    tried = []
    for backend in candidates(environ):
        problem = try_backend(backend)
        if problem is None:
            if environ is os.environ:
                if "mujoco" in sys.modules and environ.get("MUJOCO_GL", "") != backend:
                    raise MissingDependency(f"MuJoCo was imported before a GL backend was chosen; "
                                            f"set MUJOCO_GL={backend} before starting")
                _chosen = backend
            environ["MUJOCO_GL"] = backend
            return backend
        tried.append(f"{backend}: {problem}")
    raise MissingDependency(f"no OpenGL backend for rendering ({'; '.join(tried)}); {INSTALL_HINT}")
