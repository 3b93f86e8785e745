"""The simulated robot: the robot's MuJoCo model (through simreal.envs' Simulator and servo
model) with a reality gap and a fault schedule, speaking the robot side of docs/protocol.md on a
pseudo-terminal. It imports no runtime and no training code: the host side cannot tell it from
hardware except through the protocol's simulation-only requests.

robot.py (MockRobot: physics, servo modes, flags, timed faults; no I/O) · server.py (the pty
side: real-time or lockstep serving) · process.py (`simreal mock-robot`, spawn() for tests) ·
gap.py (reality-gap profiles) · faults.py (the fault schedule and per-reply faults) · cli.py.
"""
