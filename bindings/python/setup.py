# SPDX-License-Identifier: Apache-2.0
"""Build hook of the taskgrid Python package.

The gRPC stubs (``taskgrid.v1.taskgrid_pb2`` and ``taskgrid_pb2_grpc``) are
generated from the repository's ``proto/`` folder with grpcio-tools every
time the package is built, so they can never drift from the contract. They
are written straight into the build tree (or, for an editable install, into
``src/taskgrid/v1/``, which git ignores).

Generated stubs refuse to import under an older protobuf or grpcio than the
ones they were generated with, and build isolation may use a newer
grpcio-tools than the one installed. So the runtime requirements are derived
here from the generated files themselves.

The C programs (taskgrid-scheduler, taskgrid-worker, taskgrid-certs) go
into the package, as ``taskgrid/_bin/``, when the build is told where they
are: ``TASKGRID_BUNDLE_PROGRAMS=DIR``, a folder holding them or a bazel-bin
(``install/build_wheel.sh`` builds them with Bazel and sets it). Such a
wheel is tagged for this platform (py3-none-linux_x86_64), and LocalCluster
uses its programs when neither a bin_dir argument nor TASKGRID_BIN_DIR is
given. Without the variable the package is pure Python and finds the
programs at run time (TASKGRID_BIN_DIR or PATH). Nothing about the checkout
the package was built from is remembered.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import tempfile

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = pathlib.Path(__file__).resolve().parent
PROTOS = ["taskgrid/v1/taskgrid.proto"]
INIT = '''"""taskgrid.v1: gRPC stubs generated from proto/taskgrid/v1 at build time.

Do not edit: ``pip install`` regenerates these files from the contract.
"""
'''


def _proto_root() -> pathlib.Path:
    # In the repository the contract lives two levels up; an sdist carries
    # a copy in ./proto.
    for root in (HERE.parent.parent / "proto", HERE / "proto"):
        if (root / PROTOS[0]).is_file():
            return root
    raise SystemExit(
        "taskgrid: cannot find proto/taskgrid/v1/taskgrid.proto; build the "
        "package from a checkout of the taskgrid repository "
        "(pip install ./bindings/python)"
    )


def generate(out: pathlib.Path) -> None:
    """Run protoc (from grpcio-tools) on the contract into `out`."""
    import grpc_tools
    from grpc_tools import protoc

    root = _proto_root()
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
    ] + [str(root / p) for p in PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit(f"taskgrid: protoc failed on {PROTOS}")
    (out / "taskgrid" / "v1" / "__init__.py").write_text(INIT)


# Program -> its folder in a bazel-bin.
PROGRAMS = {
    "taskgrid-scheduler": "scheduler",
    "taskgrid-worker": "worker",
    "taskgrid-certs": "scheduler",
}
BUNDLE_ENV = "TASKGRID_BUNDLE_PROGRAMS"


def _programs_to_bundle() -> dict[str, pathlib.Path]:
    """The programs named by TASKGRID_BUNDLE_PROGRAMS ({} if unset)."""
    folder = os.environ.get(BUNDLE_ENV)
    if not folder:
        return {}
    base = pathlib.Path(folder)
    found: dict[str, pathlib.Path] = {}
    for name, sub in PROGRAMS.items():
        for p in (base / name, base / sub / name):
            if p.is_file() and os.access(p, os.X_OK):
                found[name] = p.resolve()
                break
        else:
            raise SystemExit(
                f"taskgrid: {BUNDLE_ENV}={folder!r} holds no {name} (looked for "
                f"{base / name} and {base / sub / name}); build it with "
                "'bazel build //scheduler:taskgrid-scheduler //worker:taskgrid-worker "
                "//scheduler:taskgrid-certs' and point the variable at bazel-bin"
            )
    return found


def _stub_requirements() -> list[str]:
    """protobuf/grpcio lower bounds matching what protoc generates now."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(pathlib.Path(tmp))
        v1 = pathlib.Path(tmp) / "taskgrid" / "v1"
        pb2 = (v1 / "taskgrid_pb2.py").read_text()
        grpc = (v1 / "taskgrid_pb2_grpc.py").read_text()
    # cryptography: a worker's data service reads the taskgrid role of a
    # peer's certificate over TLS (taskgrid.security.certificate_role).
    reqs = ["cloudpickle>=2.2", "cryptography>=3.1"]
    # tqdm: the progress bars of taskgrid.progress (the text bar, or the
    # Jupyter widget through tqdm.auto), of the Prefect runner and of the
    # taskgrid command. Pure Python, no dependencies of its own.
    reqs.append("tqdm>=4.62")
    # isal: the CRC-32 of every data-plane chunk at ~40 GB/s (ISA-L),
    # where zlib's is ~2 GB/s; taskgrid._crc falls back to zlib without
    # it (platforms with no isal wheel).
    reqs.append("isal>=1.6; platform_machine == 'x86_64' or "
                "platform_machine == 'AMD64' or platform_machine == 'aarch64' "
                "or platform_machine == 'arm64'")
    m = re.search(r"Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", pb2)
    if m:
        major = int(m.group(1))
        reqs.append(f"protobuf>={m.group(1)}.{m.group(2)}.{m.group(3)},<{major + 1}")
    else:
        reqs.append("protobuf>=4.21")
    m = re.search(r"GRPC_GENERATED_VERSION = '([0-9.]+)'", grpc)
    reqs.append(f"grpcio>={m.group(1)}" if m else "grpcio>=1.60")
    return reqs


class BuildPyWithStubs(build_py):
    """build_py that also generates taskgrid/v1 from proto/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            target = HERE / "src"
        else:
            target = pathlib.Path(self.build_lib)
        shutil.rmtree(target / "taskgrid" / "v1", ignore_errors=True)
        generate(target)
        # No longer written (the package remembers no checkout); a stale
        # copy in a reused build/ must not ship.
        (target / "taskgrid" / "_build_info.py").unlink(missing_ok=True)
        bin_dir = target / "taskgrid" / "_bin"
        shutil.rmtree(bin_dir, ignore_errors=True)
        programs = _programs_to_bundle()
        if programs and getattr(self, "editable_mode", False):
            print(f"taskgrid: editable install: {BUNDLE_ENV} ignored (the "
                  "programs are not copied into the source tree)")
        elif programs:
            bin_dir.mkdir(parents=True)
            for name, src in programs.items():
                shutil.copyfile(src, bin_dir / name)
                (bin_dir / name).chmod(0o755)
            print(f"taskgrid: bundled {', '.join(sorted(programs))} from "
                  f"{os.environ[BUNDLE_ENV]}")


class DistributionWithPrograms(Distribution):
    """With programs to bundle the package is platform-specific: built into
    a platform build/lib.* and installed to platlib."""

    def has_ext_modules(self) -> bool:
        return bool(_programs_to_bundle())


class BdistWheelTagged(bdist_wheel):
    """A wheel carrying the C programs is for this platform only."""

    def get_tag(self) -> tuple[str, str, str]:
        python, abi, plat = super().get_tag()
        if not self.root_is_pure:
            # Programs, not a Python extension: any Python 3, no ABI.
            python, abi = "py3", "none"
        return python, abi, plat


setup(
    install_requires=_stub_requirements(),
    distclass=DistributionWithPrograms,
    cmdclass={"build_py": BuildPyWithStubs, "bdist_wheel": BdistWheelTagged},
)
