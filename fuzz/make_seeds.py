#!/usr/bin/env python3
"""Writes the protobuf seeds of the request-validator targets (select_provider, budget) into
seeds/<target>/. A few valid and near-valid requests, encoded by hand (field numbers from
proto/bursar/v1/*.proto), so the fuzzer starts from the shape of a real call."""
import os
import struct


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field, n):
    return varint(field << 3) + varint(n)


def f_double(field, x):
    return varint(field << 3 | 1) + struct.pack("<d", x)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def select(resources=b"", hours=2.0, market=2, spot=b"", inputs=(), constraints=b"", top_k=3, labels=()):
    out = bytearray()
    if resources:
        out += f_bytes(1, resources)
    out += f_double(2, hours)
    out += f_varint(3, market)
    if spot:
        out += f_bytes(4, spot)
    for i in inputs:
        out += f_bytes(5, i)
    if constraints:
        out += f_bytes(8, constraints)
    out += f_varint(9, top_k)
    for k, v in labels:
        out += f_bytes(10, f_bytes(1, k) + f_bytes(2, v))
    return bytes(out)


def budget(name="ml", scope=b"", amount=("5000.50", "USD"), thresholds=(("80", "", 0),), emails=("a@example.com",), hooks=(), tz="", gate=0, period=0, metric=0):
    b = bytearray(f_bytes(1, name))
    if scope:
        b += f_bytes(2, scope)
    b += f_varint(3, period)
    b += f_bytes(4, f_bytes(1, amount[0]) + f_bytes(2, amount[1]))
    b += f_varint(5, metric)
    for pct, amt, on in thresholds:
        t = bytearray()
        if pct:
            t += f_bytes(1, pct)
        if amt:
            t += f_bytes(2, amt)
        t += f_varint(3, on)
        b += f_bytes(10, bytes(t))
    for e in emails:
        b += f_bytes(11, e)
    for h in hooks:
        b += f_bytes(12, h)
    if tz:
        b += f_bytes(13, tz)
    b += f_varint(14, gate)
    return f_bytes(1, bytes(b))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    seeds = {
        "select_provider": {
            "cpu": select(resources=f_varint(1, 4) + f_double(2, 16.0)),
            "gpu": select(resources=f_bytes(3, "A100") + f_varint(4, 8) + f_double(5, 40.0) + f_varint(6, 2),
                          spot=f_bytes(1, "<10%") + f_double(2, 30.0)),
            "data": select(resources=f_varint(1, 2),
                           inputs=[f_double(1, 500.0) + f_bytes(2, f_bytes(3, "s3://bucket/key@us-east-1")),
                                   f_double(1, 20.0) + f_bytes(2, f_varint(1, 2) + f_bytes(2, "us-central1"))]),
            "constrained": select(resources=f_varint(1, 8),
                                  constraints=f_varint(1, 1) + f_varint(1, 2) + f_bytes(3, "us-east-1")
                                  + f_bytes(4, "eu-west-1") + f_bytes(5, "EU") + f_bytes(6, "3.50")
                                  + f_bytes(7, "100") + f_varint(8, 1),
                                  labels=[("team", "ml")], top_k=10),
        },
        "budget": {
            "monthly": budget(scope=f_bytes(1, "aws") + f_bytes(5, "team=ml"),
                              thresholds=(("80", "", 0), ("", "4500", 1))),
            "egress": budget(name="egress", metric=1, amount=("100", "GB"), period=1, gate=2),
            "webhook": budget(name="deny", hooks=("https://hooks.slack.com/services/T0/B0/SECRET",),
                              tz="Europe/Berlin", gate=3, period=3),
        },
    }
    for target, files in seeds.items():
        d = os.path.join(here, "seeds", target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name + ".bin"), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
