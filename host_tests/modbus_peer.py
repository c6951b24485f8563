"""A pymodbus RTU server for the tests: the real Modbus peer on one end of
a socat pty pair.

    python modbus_peer.py SPEC.json

SPEC: {"port": PTY, "baud": 9600, "parity": "N",
       "devices": {"UNIT": {"input": {"ADDR": REG, ...}, "holding": {...}}}}
Each device answers function 0x04 from its "input" registers and 0x03 from
its "holding" registers; an address it does not have gets an exception
response (02), a unit not in SPEC gets no answer. Prints "READY" on stdout
once serving.
"""
import asyncio
import json
import logging
import sys

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType


def blocks(regs):
    """SimData blocks of consecutive addresses."""
    out = []
    addrs = sorted(int(a) for a in regs)
    start = None
    vals = []
    for a in addrs:
        if start is not None and a == start + len(vals):
            vals.append(regs[str(a)])
            continue
        if start is not None:
            out.append(SimData(start, values=vals, datatype=DataType.REGISTERS))
        start, vals = a, [regs[str(a)]]
    if start is not None:
        out.append(SimData(start, values=vals, datatype=DataType.REGISTERS))
    return out


async def serve(spec):
    bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
    devices = []
    for unit, d in spec["devices"].items():
        hr = blocks(d.get("holding", {})) or [SimData(0xFFF0, values=[0], datatype=DataType.REGISTERS)]
        ir = blocks(d.get("input", {})) or [SimData(0xFFF0, values=[0], datatype=DataType.REGISTERS)]
        devices.append(SimDevice(int(unit), simdata=(bits, bits, hr, ir)))
    server = ModbusSerialServer(devices, port=spec["port"], baudrate=spec.get("baud", 9600),
                                parity=spec.get("parity", "N"), ignore_missing_devices=True)
    task = asyncio.ensure_future(server.serve_forever())
    await asyncio.sleep(0.2)
    print("READY", flush=True)
    await task


def main(path):
    logging.basicConfig(level=logging.CRITICAL)
    with open(path) as f:
        spec = json.load(f)
    asyncio.run(serve(spec))


if __name__ == "__main__":
    main(sys.argv[1])
