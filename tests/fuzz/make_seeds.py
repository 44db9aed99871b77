#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write the fuzzers' seed corpus: a few well-formed messages per decode
entry point, encoded by hand (no protobuf runtime needed), into
tests/fuzz/corpus/<Type>/. Run once after changing the .proto; the output
is checked in. Usage: python3 tests/fuzz/make_seeds.py [OUT_DIR]"""

import os
import struct
import sys


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def f_var(tag: int, v: int) -> bytes:
    return varint(tag << 3) + varint(v & 0xFFFFFFFFFFFFFFFF)


def f_len(tag: int, b) -> bytes:
    if isinstance(b, str):
        b = b.encode()
    return varint(tag << 3 | 2) + varint(len(b)) + b


def f_dbl(tag: int, d: float) -> bytes:
    return varint(tag << 3 | 1) + struct.pack("<d", d)


resource = f_len(1, "GPU") + f_dbl(2, 1.0)
task = (f_len(1, "inc-1") + f_len(2, "tg.inc") + f_len(3, "41") +
        f_len(4, "json") + f_len(5, "inc-0") + f_var(6, 3) +
        f_len(7, resource) + f_var(8, 2) + f_len(9, "w1"))
error = (f_len(1, "ValueError") + f_len(2, "bad") + f_len(3, "tb") +
         f_len(4, "inc-0"))
result_ok = f_len(1, "inc-1") + f_var(2, 4) + f_len(3, "42") + f_len(4, "json")
result_err = f_len(1, "inc-2") + f_var(2, 5) + f_len(5, error) + f_var(6, 1)
register = (f_len(1, "w1") + f_var(2, 4) + f_len(3, "tg.inc") +
            f_len(3, "tg.sum") + f_len(4, resource) + f_len(5, "taskgrid/0.1") +
            f_var(6, 1234) + f_len(7, "host") + f_len(8, "L1"))
assign = (f_len(1, "inc-1") + f_len(2, "tg.inc") + f_len(3, "41") +
          f_len(4, "json") + f_len(5, result_ok) + f_var(6, 1) + f_var(7, -1))
annotation = (f_var(1, 1) + f_var(2, 5) + f_var(3, 1) + f_len(4, resource) +
              f_var(5, 1) + f_var(6, 3))
worker_info = (f_len(1, "w1") + f_var(2, 4) + f_var(3, 1) + f_len(4, "tg.inc") +
               f_len(5, resource) + f_var(6, 0))
key_status = f_len(1, "inc-1") + f_var(2, 2) + f_len(3, "waiting on inc-0")

SEEDS = {
    "SubmitRequest": [b"", f_len(1, task) + f_len(2, "client-1") +
                      f_len(3, "old"), f_len(1, task) + f_len(1, task)],
    "GatherRequest": [b"", f_len(1, "inc-1") + f_var(2, 1000) + f_var(3, 1)],
    "ScaleRequest": [b"", f_var(1, 4) + f_var(2, 1) + f_var(3, 8)],
    "AnnotateRequest": [f_len(1, "inc-1") + f_len(2, annotation)],
    "CancelRequest": [f_len(1, "inc-1") + f_len(1, "inc-2")],
    "ReleaseRequest": [f_len(1, "inc-1")],
    "StatusRequest": [b"", f_len(1, "inc-1")],
    "HealthCheckRequest": [b"", f_len(1, "taskgrid.v1.Scheduler")],
    # grpc.reflection.v1 (and v1alpha, the same bytes): the scheduler and
    # the workers' data service decode them.
    "ServerReflectionRequest": [
        f_len(7, ""), f_len(1, "host") + f_len(4, "taskgrid.v1.Scheduler"),
        f_len(3, "taskgrid/v1/taskgrid.proto"),
        f_len(5, f_len(1, "taskgrid.v1.TaskSpec") + f_var(2, 100)),
        f_len(6, "taskgrid.v1.TaskSpec")],
    "WorkerMessage": [f_len(1, register), f_len(2, result_ok) +
                      f_len(2, result_err) + f_var(3, 99) + f_len(4, "inc-3"),
                      b""],
    "SchedulerMessage": [f_len(1, assign) + f_len(2, "inc-9") + f_var(3, 0) +
                         f_len(4, "w1") + f_var(5, 500) + f_len(6, "inc-8"),
                         f_var(3, 1)],
    "SubmitResponse": [f_var(1, 3) + f_var(2, 1)],
    "GatherResponse": [f_len(1, result_ok) + f_len(1, result_err)],
    "ScaleResponse": [f_var(1, 2) + f_var(2, 4)],
    "AnnotateResponse": [f_var(1, 1)],
    "CancelResponse": [f_var(1, 1)],
    "ReleaseResponse": [f_var(1, 1)],
    "StatusResponse": [f_len(1, worker_info) + f_var(2, 1) + f_var(3, 2) +
                       f_var(4, 3) + f_var(5, 4) + f_var(6, 5) + f_var(7, 6) +
                       f_len(8, key_status) + f_len(9, "0.1") + f_var(10, 1)],
    "HealthCheckResponse": [f_var(1, 1)],
}


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus")
    for name, seeds in SEEDS.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        for i, s in enumerate(seeds):
            with open(os.path.join(d, "seed-%d" % i), "wb") as f:
                f.write(s)


if __name__ == "__main__":
    main()
