"""A grpcio server implementing the interop service and grpc.health.v1, for our C# client to call.

Prints "LISTENING <port>" once serving; stops when its standard input closes.
"""
import sys
import threading
import time
from concurrent import futures

import grpc

from interop_common import CHANNEL_OPTIONS, load_protos, pattern

P = load_protos()
pb = P["interop"]
health_pb = P["health"]
SERVICE = "tuning.interop.v1.InteropTest"

_last_cancel = {"cancelled": False, "ms": 0}
_lock = threading.Lock()


def _metadata(context):
    return [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-")]


def _respond(request, context, sequence):
    response = pb.EchoResponse(text=request.text, sequence=sequence)
    response.payload = pattern(request.response_size, sequence) if request.response_size > 0 else request.payload
    remaining = context.time_remaining()
    response.remaining_ms = -1 if remaining is None or remaining > 1e8 else int(remaining * 1000)
    for key, value in _metadata(context):
        if key.endswith("-bin"):
            import base64
            value = base64.b64encode(value).decode("ascii")
        response.metadata[key] = value
    return response


def echo(request, context):
    if request.delay_ms > 0:
        deadline = time.monotonic() + request.delay_ms / 1000
        while time.monotonic() < deadline and context.is_active():
            time.sleep(0.01)
    if request.throw_exception:
        raise RuntimeError("secret internal detail")
    if request.compress_response:
        context.set_compression(grpc.Compression.Gzip)
    if request.echo_metadata:
        echoed = _metadata(context)
        context.send_initial_metadata(echoed)
        context.set_trailing_metadata(echoed)
    if request.fail_code != 0:
        context.abort(grpc.StatusCode(_code(request.fail_code)), request.fail_message)
    return _respond(request, context, 0)


def _code(number):
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.value
    raise ValueError(number)


def stream_out(request, context):
    if request.compress_response:
        context.set_compression(grpc.Compression.Gzip)
    for i in range(request.count):
        if request.fail_after > 0 and i == request.fail_after:
            context.abort(grpc.StatusCode(_code(request.fail_code)), "Failed after %d messages." % i)
        if request.interval_ms > 0 and i > 0:
            time.sleep(request.interval_ms / 1000)
        yield pb.EchoResponse(sequence=i, payload=pattern(request.size_bytes, i))


def upload(request_iterator, context):
    count, total, texts = 0, 0, []
    for request in request_iterator:
        count += 1
        total += len(request.payload)
        texts.append(request.text)
    return pb.UploadSummary(count=count, total_bytes=total, joined_text=",".join(texts))


def chat(request_iterator, context):
    for sequence, request in enumerate(request_iterator):
        if request.fail_code != 0:
            context.abort(grpc.StatusCode(_code(request.fail_code)), request.fail_message)
        yield _respond(request, context, sequence)


def wait_for_cancel(request, context):
    with _lock:
        _last_cancel.update(cancelled=False, ms=0)
    started = time.monotonic()
    done = threading.Event()

    def on_done():
        with _lock:
            _last_cancel.update(cancelled=True, ms=int((time.monotonic() - started) * 1000))
        done.set()

    context.add_callback(on_done)
    done.wait(60)
    return pb.EchoResponse()


def last_cancellation(request, context):
    with _lock:
        return pb.CancellationReport(cancelled=_last_cancel["cancelled"], handler_ran_ms=_last_cancel["ms"])


def health_check(request, context):
    if request.service in ("", SERVICE):
        return health_pb.HealthCheckResponse(status=health_pb.HealthCheckResponse.SERVING)
    context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")


def health_watch(request, context):
    known = request.service in ("", SERVICE)
    yield health_pb.HealthCheckResponse(
        status=health_pb.HealthCheckResponse.SERVING if known else health_pb.HealthCheckResponse.SERVICE_UNKNOWN)
    while context.is_active():
        time.sleep(0.05)


def _unary(fn, req, resp):
    return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=CHANNEL_OPTIONS)
    interop = grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": _unary(echo, pb.EchoRequest, pb.EchoResponse),
        "StreamOut": grpc.unary_stream_rpc_method_handler(
            stream_out, request_deserializer=pb.StreamRequest.FromString, response_serializer=pb.EchoResponse.SerializeToString),
        "Upload": grpc.stream_unary_rpc_method_handler(
            upload, request_deserializer=pb.EchoRequest.FromString, response_serializer=pb.UploadSummary.SerializeToString),
        "Chat": grpc.stream_stream_rpc_method_handler(
            chat, request_deserializer=pb.EchoRequest.FromString, response_serializer=pb.EchoResponse.SerializeToString),
        "WaitForCancel": _unary(wait_for_cancel, pb.EchoRequest, pb.EchoResponse),
        "LastCancellation": _unary(last_cancellation, pb.CancellationQuery, pb.CancellationReport),
    })
    health = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": _unary(health_check, health_pb.HealthCheckRequest, health_pb.HealthCheckResponse),
        "Watch": grpc.unary_stream_rpc_method_handler(
            health_watch, request_deserializer=health_pb.HealthCheckRequest.FromString,
            response_serializer=health_pb.HealthCheckResponse.SerializeToString),
    })
    server.add_generic_rpc_handlers((interop, health))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("LISTENING %d" % port, flush=True)
    sys.stdin.read()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
