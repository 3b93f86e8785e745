"""Servo models as plain data: register tables, units and limits, from the manufacturers' manuals
(Feetech STS3215 memory table; ROBOTIS e-Manual control tables for the XL330-M288 and XM430-W350).

Only what simreal reads or writes is listed. `decode`/`encode` turn register bytes into integers
with the model's byte order and sign convention: Feetech STS uses a sign bit (sign-magnitude:
bit 15 for positions and speeds, bit 10 for load), Dynamixel two's complement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Register:
    address: int
    size: int                     # bytes
    sign_bit: int | None = None   # sign-magnitude (Feetech): this bit is the sign
    signed: bool = False          # two's complement (Dynamixel)
    eeprom: bool = False          # written to flash: only with torque off (and on Feetech, unlocked)

    def decode(self, data: bytes, offset: int = 0) -> int:
        raw = int.from_bytes(data[offset:offset + self.size], "little")
        if self.sign_bit is not None:
            mag = raw & ((1 << self.sign_bit) - 1)
            return -mag if raw >> self.sign_bit & 1 else mag
        if self.signed and raw >> (8 * self.size - 1):
            return raw - (1 << (8 * self.size))
        return raw

    def encode(self, value: int) -> bytes:
        value = int(value)
        if self.sign_bit is not None:
            mag = abs(value)
            if mag >= 1 << self.sign_bit:
                raise ValueError(f"{value} does not fit {self.sign_bit} magnitude bits")
            raw = mag | ((1 << self.sign_bit) if value < 0 else 0)
        elif self.signed:
            lim = 1 << (8 * self.size - 1)
            if not -lim <= value < lim:
                raise ValueError(f"{value} does not fit a signed {self.size}-byte register")
            raw = value & ((1 << (8 * self.size)) - 1)
        else:
            if not 0 <= value < 1 << (8 * self.size):
                raise ValueError(f"{value} does not fit an unsigned {self.size}-byte register")
            raw = value
        return raw.to_bytes(self.size, "little")


@dataclass(frozen=True)
class ServoModel:
    """One servo model. Units convert register integers to SI:
    position ticks -> rad (ticks_per_rev, `center` tick = 0 rad), velocity LSB -> rad/s,
    load LSB -> fraction of stall torque (Feetech load, Dynamixel current / stall current),
    voltage LSB -> V. `state` is the register block the runtime reads every cycle."""
    name: str
    family: str                          # "feetech" | "dynamixel"
    model_number: int
    registers: Mapping[str, Register]
    state: tuple[str, ...]               # read every cycle as one block
    ticks_per_rev: int = 4096
    center: int = 2048
    velocity_lsb: float = 2 * math.pi / 4096      # rad/s per LSB
    load_lsb: float = 0.001                        # stall-torque fraction per LSB
    voltage_lsb: float = 0.1
    max_speed: float = 5.2                         # rad/s the servo can move unloaded at nominal voltage
    baud_rates: Mapping[int, int] = field(default_factory=dict)   # register value -> baud
    error_bits: Mapping[int, str] = field(default_factory=dict)   # status-byte bit -> Fault name
    max_temperature: float = 70.0                  # firmware shutdown, deg C
    default_return_delay_us: int = 0

    def __post_init__(self) -> None:
        if self.family not in ("feetech", "dynamixel"):
            raise ValueError(f"servo model {self.name}: unknown family {self.family!r}")

    def reg(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise KeyError(f"servo model {self.name} has no register {name!r}") from None

    def has(self, name: str) -> bool:
        return name in self.registers

    @property
    def state_block(self) -> tuple[int, int]:
        """(first address, length) covering every register in `state`."""
        regs = [self.reg(n) for n in self.state]
        first = min(r.address for r in regs)
        return first, max(r.address + r.size for r in regs) - first

    def ticks_to_rad(self, ticks: float) -> float:
        return (ticks - self.center) * 2 * math.pi / self.ticks_per_rev

    def rad_to_ticks(self, rad: float) -> int:
        return int(round(rad * self.ticks_per_rev / (2 * math.pi) + self.center))

    def baud_code(self, baud: int) -> int:
        for code, b in self.baud_rates.items():
            if b == baud:
                return code
        raise ValueError(f"{self.name} has no baud rate {baud} (it has {sorted(self.baud_rates.values())})")


R = Register

STS3215 = ServoModel(
    name="STS3215", family="feetech", model_number=777,
    registers={
        "firmware_major": R(0, 1, eeprom=True), "firmware_minor": R(1, 1, eeprom=True),
        "model_number": R(3, 2, eeprom=True), "id": R(5, 1, eeprom=True),
        "baud_rate": R(6, 1, eeprom=True), "return_delay": R(7, 1, eeprom=True),
        "min_position_limit": R(9, 2, eeprom=True), "max_position_limit": R(11, 2, eeprom=True),
        "max_temperature_limit": R(13, 1, eeprom=True), "p_gain": R(21, 1, eeprom=True),
        "d_gain": R(22, 1, eeprom=True), "i_gain": R(23, 1, eeprom=True),
        "homing_offset": R(31, 2, sign_bit=11, eeprom=True), "operating_mode": R(33, 1, eeprom=True),
        "torque_enable": R(40, 1), "acceleration": R(41, 1), "goal_position": R(42, 2, sign_bit=15),
        "goal_time": R(44, 2), "goal_velocity": R(46, 2, sign_bit=15), "torque_limit": R(48, 2),
        "lock": R(55, 1),
        "present_position": R(56, 2, sign_bit=15), "present_velocity": R(58, 2, sign_bit=15),
        "present_load": R(60, 2, sign_bit=10), "present_voltage": R(62, 1),
        "present_temperature": R(63, 1), "hardware_error": R(65, 1), "moving": R(66, 1),
        "present_current": R(69, 2, sign_bit=15),
    },
    state=("present_position", "present_velocity", "present_load", "present_voltage",
           "present_temperature", "hardware_error"),
    velocity_lsb=2 * math.pi / 4096,     # steps/s
    load_lsb=0.001,                      # 0.1 % of the maximum torque
    max_speed=3400 * 2 * math.pi / 4096,  # the firmware's target slew, ~5.2 rad/s
    baud_rates={0: 1_000_000, 1: 500_000, 2: 250_000, 3: 128_000, 4: 115_200, 5: 76_800,
                6: 57_600, 7: 38_400},
    # status register 65 and the status packet's error byte
    error_bits={0: "VOLTAGE", 1: "ENCODER", 2: "OVERHEAT", 3: "OVERLOAD", 5: "OVERLOAD"},
    max_temperature=70.0, default_return_delay_us=0,
)


def _xseries(name: str, model_number: int, *, current_lsb_a: float, stall_current_a: float,
             max_speed: float) -> ServoModel:
    return ServoModel(
        name=name, family="dynamixel", model_number=model_number,
        registers={
            "model_number": R(0, 2, eeprom=True), "firmware": R(6, 1, eeprom=True),
            "id": R(7, 1, eeprom=True), "baud_rate": R(8, 1, eeprom=True),
            "return_delay": R(9, 1, eeprom=True), "operating_mode": R(11, 1, eeprom=True),
            "homing_offset": R(20, 4, signed=True, eeprom=True),
            "max_temperature_limit": R(31, 1, eeprom=True), "current_limit": R(38, 2, eeprom=True),
            "max_position_limit": R(48, 4, eeprom=True), "min_position_limit": R(52, 4, eeprom=True),
            "torque_enable": R(64, 1), "hardware_error": R(70, 1),
            "d_gain": R(80, 2), "i_gain": R(82, 2), "p_gain": R(84, 2), "bus_watchdog": R(98, 1, signed=True),
            "goal_current": R(102, 2, signed=True), "goal_position": R(116, 4, signed=True),
            "present_current": R(126, 2, signed=True), "present_velocity": R(128, 4, signed=True),
            "present_position": R(132, 4, signed=True), "present_voltage": R(144, 2),
            "present_temperature": R(146, 1),
        },
        state=("present_current", "present_velocity", "present_position", "present_voltage",
               "present_temperature"),
        velocity_lsb=0.229 * 2 * math.pi / 60,     # 0.229 rpm
        load_lsb=current_lsb_a / stall_current_a,
        max_speed=max_speed,
        baud_rates={0: 9_600, 1: 57_600, 2: 115_200, 3: 1_000_000, 4: 2_000_000, 5: 3_000_000,
                    6: 4_000_000},
        # register 70 (Hardware Error Status); the status packet's bit 7 says one is latched
        error_bits={0: "VOLTAGE", 2: "OVERHEAT", 3: "ENCODER", 4: "SERVO_ALERT", 5: "OVERLOAD"},
        max_temperature=70.0, default_return_delay_us=500,
    )


XL330_M288 = _xseries("XL330-M288", 1200, current_lsb_a=0.001, stall_current_a=1.47, max_speed=10.9)
XM430_W350 = _xseries("XM430-W350", 1020, current_lsb_a=0.00269, stall_current_a=2.3, max_speed=4.8)

MODELS: dict[str, ServoModel] = {m.name: m for m in (STS3215, XL330_M288, XM430_W350)}
DEFAULT_MODEL = {"feetech": "STS3215", "dynamixel": "XL330-M288"}


def model(name: str) -> ServoModel:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown servo model {name!r} (known: {', '.join(MODELS)})") from None


def by_number(family: str, number: int) -> ServoModel | None:
    return next((m for m in MODELS.values() if m.family == family and m.model_number == number), None)
