# SPDX-License-Identifier: Apache-2.0
"""python -m taskgrid.worker: the Python worker's command line.

It takes the C worker's flags, so the scheduler's local launcher can start
it (``--worker-bin`` pointing to a wrapper running this module): ADDRESS,
--name, --nthreads, --resources, --preload (a module name or a .py path
whose import registers functions), --log-level, --heartbeat-ms and
--tls-ca/--tls-cert/--tls-key, the data service's --data-listen,
--data-address and --data-clients, and memory management's
--memory-limit, --memory-target, --memory-pause, --memory-terminate and
--spill-dir, and --exit-with-parent-fd (stop at end of file on a
descriptor: 0 for a worker started over ssh, whose stdin is the ssh
channel); TASKGRID_LAUNCH_ID is echoed to the scheduler. Exit codes: 0
after a clean stop or drain, 2 for a usage or start-up error, 3 past the
memory terminate fraction.
SIGTERM/SIGINT stop cleanly; a second one exits at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        import time

        t = time.gmtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m taskgrid.worker",
        description="Connect to the taskgrid scheduler at ADDRESS and run the "
        "Python tasks it assigns.",
    )
    p.add_argument("address", metavar="ADDRESS", help="tcp://host:port or tls://host:port")
    p.add_argument(
        "--nthreads",
        type=int,
        default=os.cpu_count() or 1,
        help="tasks run at once (default: number of CPUs)",
    )
    p.add_argument("--name", help="worker name (default: HOSTNAME-PID)")
    p.add_argument("--resources", default="", help="resource capacities, e.g. GPU=2,MEMORY=16e9")
    p.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (name or .py path) that registers functions (repeatable)",
    )
    p.add_argument(
        "--heartbeat-ms",
        type=int,
        default=1000,
        help="heartbeat interval until the scheduler sets one (default 1000)",
    )
    p.add_argument("--log-level", default="info", choices=sorted(LEVELS))
    p.add_argument("--tls-ca", help="CA certificate (PEM) of the cluster")
    p.add_argument("--tls-cert", help="this worker's certificate (PEM)")
    p.add_argument("--tls-key", help="this worker's private key (PEM)")
    p.add_argument(
        "--data-listen",
        metavar="HOST:PORT",
        help="where the data service (DataService.Fetch: results this worker holds, for "
        "other workers) listens; 'none': no data service, every result is sent inline "
        "(default: 127.0.0.1:0 when the scheduler's address is a loopback one, else 0.0.0.0:0)",
    )
    p.add_argument(
        "--data-address",
        metavar="HOST:PORT",
        help="the data service's address as other workers reach it, sent to the scheduler "
        "(default: the listen host with the bound port; for 0.0.0.0 or ::, this host's IP "
        "address on the route to the scheduler, or its name when there is none; "
        "port 0: the bound port)",
    )
    p.add_argument(
        "--data-clients",
        action="store_true",
        help="over TLS, let client certificates fetch held results from the data service too "
        "(clients fetching directly, direct_to_workers); default: worker certificates only",
    )
    p.add_argument(
        "--memory-limit",
        default="auto",
        metavar="BYTES",
        help="memory for held results, e.g. 4GiB or 500MB; 'auto': this machine's memory "
        "(or its cgroup's limit); 'none': no limit (default auto)",
    )
    p.add_argument(
        "--memory-target",
        default="0.6",
        metavar="F",
        help="spill the least recently used held results to disk beyond this fraction of "
        "the limit (default 0.6; 'none': never spill)",
    )
    p.add_argument(
        "--memory-pause",
        default="0.8",
        metavar="F",
        help="beyond this fraction take no new tasks until results are freed (default 0.8; 'none')",
    )
    p.add_argument(
        "--memory-terminate",
        default="0.95",
        metavar="F",
        help="beyond this fraction exit with status 3 (default 0.95; 'none')",
    )
    p.add_argument(
        "--spill-dir",
        metavar="DIR",
        help="where spilled results go (default: a private temporary directory, removed at exit)",
    )
    p.add_argument(
        "--exit-with-parent-fd",
        type=int,
        metavar="N",
        help="stop (as on SIGTERM) when descriptor N reaches end of file: the process "
        "holding its other end exited or closed it (0: stdin, e.g. the ssh channel of "
        "a worker started over ssh)",
    )
    p.add_argument(
        "--death-timeout",
        type=float,
        default=0.0,
        metavar="S",
        help="exit (status 1) once the scheduler has been out of reach for S seconds, at "
        "start or after losing it (default 0: keep trying)",
    )
    return p


def _watch_fd(fd: int) -> None:
    """Read `fd` until end of file (bytes are ignored), then stop the
    worker exactly as SIGTERM does."""
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    logging.getLogger("taskgrid").info(
        "end of file on descriptor %d (--exit-with-parent-fd); stopping", fd
    )
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)-5s worker: %(message)s"))
    log = logging.getLogger("taskgrid")
    log.addHandler(handler)
    log.setLevel(LEVELS[args.log_level])
    log.propagate = False

    from .. import _context
    from ..security import Security
    from .core import Worker

    security = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        if not (args.tls_ca and args.tls_cert and args.tls_key):
            print(
                "taskgrid worker: error: mutual TLS needs --tls-ca, --tls-cert and --tls-key",
                file=sys.stderr,
            )
            return 2
        security = Security(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
    if args.exit_with_parent_fd is not None:
        try:
            os.fstat(args.exit_with_parent_fd)
        except (OSError, OverflowError, ValueError):
            print(
                f"taskgrid worker: error: --exit-with-parent-fd: descriptor "
                f"{args.exit_with_parent_fd} is not open",
                file=sys.stderr,
            )
            return 2
    if args.nthreads < 1:
        print("taskgrid worker: error: --nthreads must be at least 1", file=sys.stderr)
        return 2
    try:
        worker = Worker(
            args.address,
            nthreads=args.nthreads,
            name=args.name,
            resources=args.resources,
            preload=args.preload,
            security=security,
            heartbeat_ms=args.heartbeat_ms,
            data_listen=args.data_listen,
            data_address=args.data_address,
            data_clients=args.data_clients,
            memory_limit=args.memory_limit,
            memory_target=args.memory_target,
            memory_pause=args.memory_pause,
            memory_terminate=args.memory_terminate,
            spill_dir=args.spill_dir,
            death_timeout=args.death_timeout,
        )
    except Exception as e:  # noqa: BLE001 - reported as a start-up error
        print(f"taskgrid worker: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    _context.process_worker = worker

    seen: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if seen:
            os.write(2, b"taskgrid worker: second signal, exiting now\n")
            os._exit(1)
        seen.append(signum)
        worker.stop(timeout=0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_with_parent_fd is not None:
        threading.Thread(
            target=_watch_fd,
            args=(args.exit_with_parent_fd,),
            daemon=True,
            name="taskgrid-parent-fd",
        ).start()
    # Run the session on a thread: the main thread stays free for signals.
    worker.start()
    while not worker.stopped:
        worker._done.wait(0.5)
    return 1 if worker.gave_up else 0


if __name__ == "__main__":
    sys.exit(main())
