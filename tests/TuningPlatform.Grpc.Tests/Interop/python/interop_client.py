"""A grpcio client that exercises one interop case against our server.

Usage: interop_client.py HOST:PORT CASE
Exits 0 and prints "PASS CASE" when the case holds; otherwise raises (exit 1) with what differed.
"""
import base64
import sys
import threading
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from interop_common import CHANNEL_OPTIONS, load_protos, pattern

P = load_protos()
pb = P["interop"]
health_pb = P["health"]
SERVICE = "tuning.interop.v1.InteropTest"


class Stubs:
    def __init__(self, channel):
        def method(name, req, resp, kind):
            factory = getattr(channel, kind)
            return factory("/%s/%s" % (SERVICE, name), request_serializer=req.SerializeToString,
                           response_deserializer=resp.FromString)
        self.echo = method("Echo", pb.EchoRequest, pb.EchoResponse, "unary_unary")
        self.stream_out = method("StreamOut", pb.StreamRequest, pb.EchoResponse, "unary_stream")
        self.upload = method("Upload", pb.EchoRequest, pb.UploadSummary, "stream_unary")
        self.chat = method("Chat", pb.EchoRequest, pb.EchoResponse, "stream_stream")
        self.wait_for_cancel = method("WaitForCancel", pb.EchoRequest, pb.EchoResponse, "unary_unary")
        self.last_cancellation = method("LastCancellation", pb.CancellationQuery, pb.CancellationReport, "unary_unary")
        self.not_implemented = method("NotImplementedHere", pb.EchoRequest, pb.EchoResponse, "unary_unary")
        self.health_check = channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=health_pb.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb.HealthCheckResponse.FromString)
        self.health_watch = channel.unary_stream(
            "/grpc.health.v1.Health/Watch", request_serializer=health_pb.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb.HealthCheckResponse.FromString)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_error(fn, code, contains=None):
    try:
        fn()
    except grpc.RpcError as error:
        expect(error.code() == code, "expected %s, got %s: %s" % (code, error.code(), error.details()))
        if contains is not None:
            expect(contains in (error.details() or ""), "details %r lack %r" % (error.details(), contains))
        return error
    raise AssertionError("expected %s, but the call succeeded" % code)


def case_unary(s, channel):
    r = s.echo(pb.EchoRequest(text="héllo", payload=b"\x01\x02\x03"), timeout=10)
    expect(r.text == "héllo" and r.payload == b"\x01\x02\x03", "echo mismatch: %r" % r)


def case_large_message(s, channel):
    size = 10 * 1024 * 1024
    r = s.echo(pb.EchoRequest(payload=pattern(size, 3), response_size=size), timeout=60)
    expect(r.payload == pattern(size, 0), "10 MB response differs")


def case_server_streaming(s, channel):
    got = [m.sequence for m in s.stream_out(pb.StreamRequest(count=100, size_bytes=500), timeout=20)]
    expect(got == list(range(100)), "sequence %r" % got[:10])


def case_server_streaming_error_after_messages(s, channel):
    got = []
    def run():
        for m in s.stream_out(pb.StreamRequest(count=10, fail_after=3, fail_code=10), timeout=10):
            got.append(m.sequence)
    expect_error(run, grpc.StatusCode.ABORTED, "Failed after 3 messages.")
    expect(got == [0, 1, 2], "got %r before the error" % got)


def case_client_streaming(s, channel):
    requests = (pb.EchoRequest(text=str(i), payload=bytes(i)) for i in range(40))
    r = s.upload(requests, timeout=20)
    expect(r.count == 40 and r.total_bytes == sum(range(40)), "summary %r" % r)
    expect(r.joined_text == ",".join(str(i) for i in range(40)), "joined %r" % r.joined_text)


def case_bidi_ping_pong(s, channel):
    outgoing = []
    ready = threading.Condition()

    def requests():
        for i in range(10):
            with ready:
                while len(outgoing) < i:
                    ready.wait(5)
            yield pb.EchoRequest(text="ping %d" % i)

    for i, response in enumerate(s.chat(requests(), timeout=20)):
        expect(response.text == "ping %d" % i and response.sequence == i, "reply %r" % response)
        with ready:
            outgoing.append(response)
            ready.notify_all()
    expect(len(outgoing) == 10, "got %d replies" % len(outgoing))


def case_compressed_request(s, channel):
    payload = b"compressible " * 5000
    r = s.echo(pb.EchoRequest(payload=payload), timeout=10, compression=grpc.Compression.Gzip)
    expect(r.request_encoding == "gzip", "server saw grpc-encoding %r" % r.request_encoding)
    expect(r.payload == payload, "payload differs")


def case_compressed_response(s, channel):
    r = s.echo(pb.EchoRequest(response_size=100000, compress_response=True), timeout=10)
    expect(r.payload == pattern(100000, 0), "payload differs")
    got = [m.sequence for m in s.stream_out(pb.StreamRequest(count=5, size_bytes=10000, compress_response=True), timeout=10)]
    expect(got == list(range(5)), "stream %r" % got)


def case_metadata(s, channel):
    binary = b"\x00\x01\x02\xfa\xff"
    r, call = s.echo.with_call(pb.EchoRequest(echo_metadata=True), timeout=10,
                               metadata=(("x-text", "hello world"), ("x-data-bin", binary)))
    expect(r.metadata["x-text"] == "hello world", "server saw %r" % dict(r.metadata))
    expect(r.metadata["x-data-bin"] == base64.b64encode(binary).decode(), "server saw binary %r" % r.metadata["x-data-bin"])
    initial = dict(call.initial_metadata())
    trailing = dict(call.trailing_metadata())
    expect(initial.get("x-text") == "hello world" and initial.get("x-data-bin") == binary, "initial %r" % initial)
    expect(trailing.get("x-text") == "hello world" and trailing.get("x-data-bin") == binary, "trailing %r" % trailing)


def case_error_status(s, channel):
    detail = "café ✓ 100% done"
    error = expect_error(lambda: s.echo(pb.EchoRequest(fail_code=5, fail_message=detail), timeout=10), grpc.StatusCode.NOT_FOUND)
    expect(error.details() == detail, "details %r" % error.details())


def case_handler_exception(s, channel):
    error = expect_error(lambda: s.echo(pb.EchoRequest(throw_exception=True), timeout=10), grpc.StatusCode.UNKNOWN)
    expect("hunter2" not in error.details() and "InvalidOperation" not in error.details(), "leaked %r" % error.details())


def case_deadline_exceeded(s, channel):
    started = time.monotonic()
    expect_error(lambda: s.echo(pb.EchoRequest(delay_ms=10000), timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED)
    expect(time.monotonic() - started < 3, "took %.1fs" % (time.monotonic() - started))
    # The server enforces the deadline too: its handler's token fires.
    expect_error(lambda: s.wait_for_cancel(pb.EchoRequest(), timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED)
    expect(_poll_cancelled(s), "server handler never saw the deadline")


def case_deadline_propagated(s, channel):
    r = s.echo(pb.EchoRequest(), timeout=30)
    expect(20000 < r.remaining_ms <= 30000, "server saw %d ms left" % r.remaining_ms)


def case_cancel_unary(s, channel):
    future = s.wait_for_cancel.future(pb.EchoRequest(), timeout=30)
    time.sleep(0.3)
    future.cancel()
    expect(_poll_cancelled(s), "server handler never saw the cancellation")


def case_cancel_mid_stream(s, channel):
    call = s.stream_out(pb.StreamRequest(count=100000, interval_ms=5), timeout=30)
    for _ in range(3):
        next(call)
    call.cancel()
    expect_error(lambda: [m for m in call], grpc.StatusCode.CANCELLED)
    r = s.echo(pb.EchoRequest(text="alive"), timeout=10)
    expect(r.text == "alive", "server did not survive the cancel")


def case_message_too_large(s, channel):
    expect_error(lambda: s.echo(pb.EchoRequest(payload=bytes(13 * 1024 * 1024)), timeout=30), grpc.StatusCode.RESOURCE_EXHAUSTED)


def case_unimplemented_method(s, channel):
    expect_error(lambda: s.not_implemented(pb.EchoRequest(), timeout=10), grpc.StatusCode.UNIMPLEMENTED)


def case_unknown_service(s, channel):
    stub = channel.unary_unary("/no.such.Service/Method", request_serializer=pb.EchoRequest.SerializeToString,
                               response_deserializer=pb.EchoResponse.FromString)
    expect_error(lambda: stub(pb.EchoRequest(), timeout=10), grpc.StatusCode.UNIMPLEMENTED)


def case_concurrent_calls(s, channel):
    futures = [s.echo.future(pb.EchoRequest(text="c%d" % i), timeout=20) for i in range(64)]
    texts = [f.result().text for f in futures]
    expect(texts == ["c%d" % i for i in range(64)], "texts %r" % texts[:5])


def case_health_check(s, channel):
    expect(s.health_check(health_pb.HealthCheckRequest(), timeout=5).status == health_pb.HealthCheckResponse.SERVING, "server not SERVING")
    expect(s.health_check(health_pb.HealthCheckRequest(service=SERVICE), timeout=5).status == health_pb.HealthCheckResponse.SERVING, "service not SERVING")
    expect_error(lambda: s.health_check(health_pb.HealthCheckRequest(service="no.Such"), timeout=5), grpc.StatusCode.NOT_FOUND)


def case_health_watch(s, channel):
    call = s.health_watch(health_pb.HealthCheckRequest(service=SERVICE), timeout=10)
    expect(next(call).status == health_pb.HealthCheckResponse.SERVING, "first Watch status")
    call.cancel()
    unknown = s.health_watch(health_pb.HealthCheckRequest(service="later.Service"), timeout=10)
    expect(next(unknown).status == health_pb.HealthCheckResponse.SERVICE_UNKNOWN, "unknown service status")
    unknown.cancel()


def _reflect(channel, module, package, requests):
    stub = channel.stream_stream("/%s.ServerReflection/ServerReflectionInfo" % package,
                                 request_serializer=module.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=module.ServerReflectionResponse.FromString)
    return list(stub(iter(requests), timeout=10))


def case_reflection(s, channel):
    for name, package in (("reflection", "grpc.reflection.v1"), ("reflection_alpha", "grpc.reflection.v1alpha")):
        module = P[name]
        listed, found = _reflect(channel, module, package, [
            module.ServerReflectionRequest(list_services=""),
            module.ServerReflectionRequest(file_containing_symbol=SERVICE),
        ])
        names = [svc.name for svc in listed.list_services_response.service]
        for expected in (SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"):
            expect(expected in names, "%s: %s not listed in %r" % (package, expected, names))
        # Like grpcurl: build the service from reflection alone and call it.
        pool = descriptor_pool.DescriptorPool()
        protos = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in found.file_descriptor_response.file_descriptor_proto]
        for proto in reversed(protos):
            pool.Add(proto)
        service = pool.FindServiceByName(SERVICE)
        method = service.FindMethodByName("Echo")
        factory = message_factory.MessageFactory(pool)
        request_class = factory.GetPrototype(method.input_type)
        response_class = factory.GetPrototype(method.output_type)
        call = channel.unary_unary("/%s/Echo" % SERVICE, request_serializer=request_class.SerializeToString,
                                   response_deserializer=response_class.FromString)
        expect(call(request_class(text="discovered"), timeout=10).text == "discovered", "dynamic call failed")
        missing = _reflect(channel, module, package, [module.ServerReflectionRequest(file_containing_symbol="no.Such")])[0]
        expect(missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], "missing symbol: %r" % missing)


def _poll_cancelled(s):
    until = time.monotonic() + 3
    while time.monotonic() < until:
        if s.last_cancellation(pb.CancellationQuery(), timeout=5).cancelled:
            return True
        time.sleep(0.02)
    return False


def main():
    target, case = sys.argv[1], sys.argv[2]
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        globals()["case_" + case](Stubs(channel), channel)
    print("PASS " + case)


if __name__ == "__main__":
    main()
