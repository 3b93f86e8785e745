"""A servo bus for bench work (scan, configure, calibrate): named registers of one servo model
over simreal.deploy.servo_link, with its flush / quiet period / retry discipline."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from simreal.deploy.driver import LinkTimeout
from simreal.deploy.servo_link import ServoLink
from simreal.deploy.transport import open_port
from simreal.hardware import servo_models
from simreal.hardware.codecs import CODECS
from simreal.hardware.servo_models import ServoModel



@dataclass(frozen=True)
class Found:
    servo_id: int
    model_number: int
    model: str            # the model's name, or "unknown"
    firmware: str


class ServoBus:
    def __init__(self, url: str, family: str, model: ServoModel | None = None, *, baudrate: int = 1_000_000,
                 timeout_s: float = 0.01, retries: int = 1, opener=open_port):
        self.family = family
        self.model = model or servo_models.model(servo_models.DEFAULT_MODEL[family])
        self.codec = CODECS[family]
        self.link = ServoLink(url, self.codec, baudrate=baudrate, timeout_s=timeout_s, retries=retries,
                              opener=opener)
        self.url = url

    def __enter__(self) -> ServoBus:
        self.link.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.link.close()

    def read(self, sid: int, register: str) -> int:
        r = self.model.reg(register)
        (pkt,) = self.link.transact(self.codec.read(sid, r.address, r.size), [sid],
                                    reply_bytes=self.codec.reply_length(r.size), what=f"read {register} of servo {sid}")
        if len(pkt.params) != r.size:
            raise LinkTimeout(f"read {register} of servo {sid}: {len(pkt.params)} bytes, want {r.size}")
        return r.decode(pkt.params)

    def write(self, sid: int, register: str, value: int) -> int:
        """Write and wait for the servo's status; returns its error byte."""
        r = self.model.reg(register)
        (pkt,) = self.link.transact(self.codec.write(sid, r.address, r.encode(value)), [sid],
                                    reply_bytes=self.codec.reply_length(0), what=f"write {register} of servo {sid}")
        return pkt.code

    def sync_read(self, register: str, ids: Sequence[int]) -> list[int]:
        r = self.model.reg(register)
        pkts = self.link.transact(self.codec.sync_read(r.address, r.size, ids), list(ids),
                                  reply_bytes=len(ids) * self.codec.reply_length(r.size), what=f"sync read {register}")
        if any(len(p.params) != r.size for p in pkts):
            raise LinkTimeout(f"sync read {register}: a reply of the wrong length")
        return [r.decode(p.params) for p in pkts]

    def sync_write(self, register: str, values: Mapping[int, int]) -> None:
        r = self.model.reg(register)
        self.link.send(self.codec.sync_write(r.address, r.size, {s: r.encode(v) for s, v in values.items()}))

    def ping(self, sid: int, *, timeout_s: float = 0.003) -> Found | None:
        """Who answers at `sid` (None: nobody)."""
        try:
            if self.family == "dynamixel":
                (pkt,) = self.link.transact(self.codec.ping(sid), [sid], reply_bytes=14, what=f"ping {sid}",
                                            timeout_s=timeout_s, retries=0)
                number, fw = pkt.params[0] | pkt.params[1] << 8, str(pkt.params[2])
            else:
                self.link.transact(self.codec.ping(sid), [sid], reply_bytes=6, what=f"ping {sid}",
                                   timeout_s=timeout_s, retries=0)
                number = self.read(sid, "model_number")
                fw = f"{self.read(sid, 'firmware_major')}.{self.read(sid, 'firmware_minor')}"
        except LinkTimeout:
            return None
        m = servo_models.by_number(self.family, number)
        return Found(sid, number, m.name if m else "unknown", fw)

    def scan(self, ids: Sequence[int]) -> list[Found]:
        return [f for f in (self.ping(i) for i in ids) if f is not None]

    def torque_off(self, ids: Sequence[int]) -> None:
        self.sync_write("torque_enable", {i: 0 for i in ids})
        on = [i for i, v in zip(ids, self.sync_read("torque_enable", ids)) if v]
        if on:
            raise LinkTimeout(f"torque off not confirmed by servo(s) {on}")

    def write_eeprom(self, sid: int, register: str, value: int) -> None:
        """EEPROM needs torque off (and on Feetech STS the lock register cleared, then set again)."""
        self.write(sid, "torque_enable", 0)
        if self.model.has("lock"):
            self.write(sid, "lock", 0)
        if register == "id":
            # which id the status comes from differs between firmwares: send, then find it by ping
            r = self.model.reg("id")
            self.link.send(self.codec.write(sid, r.address, r.encode(value)))
            time.sleep(0.02)
            if self.ping(value, timeout_s=0.01) is None:
                raise LinkTimeout(f"servo {sid} does not answer at its new id {value}")
        else:
            err = self.write(sid, register, value)
            if err and self.family == "dynamixel" and err & 0x7F:
                raise LinkTimeout(f"servo {sid} refused the write of {register} (error {err & 0x7F})")
        new_id = value if register == "id" else sid
        if self.model.has("lock"):
            self.write(new_id, "lock", 1)
