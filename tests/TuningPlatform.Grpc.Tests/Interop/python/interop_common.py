"""Shared by the Python grpcio interop peers: compiles the test protos with Debian's grpc_tools and loads them.

The generated modules are loaded by file path under private names, because the health and reflection
protos live in packages named grpc.* that would otherwise collide with the grpc library itself.
"""
import importlib.util
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "Protos"))

FILES = {
    "interop": "interop/v1/interop.proto",
    "health": "grpc/health/v1/health.proto",
    "reflection": "grpc/reflection/v1/reflection.proto",
    "reflection_alpha": "grpc/reflection/v1alpha/reflection.proto",
}


def load_protos():
    out = tempfile.mkdtemp(prefix="tp-interop-")
    args = [sys.executable, "-m", "grpc_tools.protoc", "-I", PROTO_ROOT, "--python_out=" + out]
    args += [os.path.join(PROTO_ROOT, f) for f in FILES.values()]
    subprocess.run(args, check=True)
    modules = {}
    for name, path in FILES.items():
        file = os.path.join(out, path[: -len(".proto")] + "_pb2.py")
        spec = importlib.util.spec_from_file_location("tp_" + name + "_pb2", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


def pattern(size, seed):
    """The same deterministic bytes as InteropTestService.Pattern in C#."""
    return bytes(((i * 31 + seed * 7) & 0xFF) for i in range(size))


MAX_MESSAGE = 20 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]
