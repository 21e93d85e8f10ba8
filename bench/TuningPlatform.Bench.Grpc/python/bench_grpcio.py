"""grpcio's side of the gRPC benchmark: an asyncio server and an asyncio client on the same proto as ours.

  bench_grpcio.py serve PROTO_ROOT          prints "LISTENING <port>", serves until stdin closes
  bench_grpcio.py client PROTO_ROOT PORT SECONDS   prints one JSON object with the figures
"""
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import grpc

SERVICE = "tuning.interop.v1.InteropTest"


def load(proto_root):
    out = tempfile.mkdtemp(prefix="tp-bench-")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_root, "--python_out=" + out,
                    os.path.join(proto_root, "interop/v1/interop.proto")], check=True)
    spec = importlib.util.spec_from_file_location("tp_bench_pb2", os.path.join(out, "interop/v1/interop_pb2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def serve(pb):
    async def echo(request, context):
        return pb.EchoResponse(text=request.text, payload=request.payload)

    async def stream_out(request, context):
        message = pb.EchoResponse(payload=bytes(request.size_bytes))
        for i in range(request.count):
            message.sequence = i
            yield message

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(echo, request_deserializer=pb.EchoRequest.FromString,
                                                    response_serializer=pb.EchoResponse.SerializeToString),
        "StreamOut": grpc.unary_stream_rpc_method_handler(stream_out, request_deserializer=pb.StreamRequest.FromString,
                                                          response_serializer=pb.EchoResponse.SerializeToString),
    })
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print("LISTENING %d" % port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(1)


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


async def unary(stub, pb, concurrency, seconds):
    request = pb.EchoRequest(text="x" * 16)
    latencies = []
    stop = time.perf_counter() + seconds

    async def worker():
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await stub(request)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"calls_per_s": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "calls": len(latencies)}


async def client(pb, port, seconds):
    async with grpc.aio.insecure_channel("127.0.0.1:%d" % port) as channel:
        echo = channel.unary_unary("/%s/Echo" % SERVICE, request_serializer=pb.EchoRequest.SerializeToString,
                                   response_deserializer=pb.EchoResponse.FromString)
        stream = channel.unary_stream("/%s/StreamOut" % SERVICE, request_serializer=pb.StreamRequest.SerializeToString,
                                      response_deserializer=pb.EchoResponse.FromString)
        await unary(echo, pb, 1, 0.5)  # warm-up
        await unary(echo, pb, 64, 0.5)
        results = {"unary_1": await unary(echo, pb, 1, seconds), "unary_64": await unary(echo, pb, 64, seconds)}
        count = 0
        started = time.perf_counter()
        async for _ in stream(pb.StreamRequest(count=200000, size_bytes=16)):
            count += 1
        results["stream_msgs_per_s"] = count / (time.perf_counter() - started)
        print(json.dumps(results), flush=True)


def main():
    mode, proto_root = sys.argv[1], sys.argv[2]
    pb = load(proto_root)
    if mode == "serve":
        asyncio.run(serve(pb))
    else:
        asyncio.run(client(pb, int(sys.argv[3]), float(sys.argv[4])))


if __name__ == "__main__":
    main()
