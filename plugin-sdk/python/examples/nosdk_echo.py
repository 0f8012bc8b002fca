#!/usr/bin/python3
"""plugd-py-nosdk-echo: a plugd plugin written from docs/protocol.md alone.

No SDK: only grpcio and the stubs generated from proto/plugd/v1/plugin.proto
and grpc/health/v1/health.proto. It offers one function, `echo`, which
returns its arguments as a list. The numbered comments follow the checklist
in docs/protocol.md section 6.
"""
import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import struct_pb2

from grpc_health.v1 import health_pb2, health_pb2_grpc
from plugd.v1 import plugin_pb2, plugin_pb2_grpc

COOKIE = "d5a1f0c2-plugd-plugin-7e3b94c6"
MY_VERSIONS = {1}
SERVICES = ["grpc.health.v1.Health", "plugd.v1.Control", "plugd.v1.Functions"]
ECHO = plugin_pb2.FunctionInfo(
    name="echo", help="echo [X...]: returns its arguments as a list",
    params=[plugin_pb2.Parameter(name="x", optional=True, variadic=True)],
    min_args=0, max_args=-1)

stop = threading.Event()
stopping = threading.Event()


class Health(health_pb2_grpc.HealthServicer):
    def _status(self, service):
        if service not in ["", "plugin"] + SERVICES:
            return None
        return (health_pb2.HealthCheckResponse.NOT_SERVING if stopping.is_set()
                else health_pb2.HealthCheckResponse.SERVING)

    def Check(self, request, context):
        status = self._status(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(self, request, context):
        status = self._status(request.service)
        if status is None:
            yield health_pb2.HealthCheckResponse(
                status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            return
        yield health_pb2.HealthCheckResponse(status=status)
        stopping.wait()  # our state changes only when we stop; then end
        yield health_pb2.HealthCheckResponse(
            status=health_pb2.HealthCheckResponse.NOT_SERVING)


class Control(plugin_pb2_grpc.ControlServicer):
    def __init__(self, version):
        self.version = version

    def Describe(self, request, context):
        return plugin_pb2.DescribeResponse(
            name="nosdk-echo", version="1.0.0", protocol_version=self.version,
            core_protocol_version=1, services=SERVICES, functions=[ECHO],
            pid=os.getpid())

    def Shutdown(self, request, context):
        context.add_callback(stop.set)  # after the answer is sent
        return plugin_pb2.ShutdownResponse()


class Functions(plugin_pb2_grpc.FunctionsServicer):
    def ListFunctions(self, request, context):
        return plugin_pb2.ListFunctionsResponse(functions=[ECHO])

    def Call(self, request, context):
        if request.function != "echo":
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f'no function "{request.function}" in plugin '
                          "nosdk-echo; it offers: echo")
        result = struct_pb2.Value()
        result.list_value.values.extend(request.args)
        return plugin_pb2.CallResponse(result=result)


def main():
    # 1. The cookie, before anything else.
    if os.environ.get("PLUGD_MAGIC_COOKIE") != COOKIE:
        print("This is a plugd plugin (nosdk-echo); it is not meant to be run "
              "by hand. Run it through a plugd host, e.g. "
              "`calc --plugin PATH --list`, or under the plugd broker.",
              file=sys.stderr)
        return 1
    # 2. The highest version both sides speak.
    offered = os.environ.get("PLUGD_PROTOCOL_VERSIONS") or "1"
    try:
        common = {int(v) for v in offered.split(",")} & MY_VERSIONS
    except ValueError:
        common = set()
    if not common:
        print(f"plugd plugin nosdk-echo: no protocol version in common: the "
              f"host supports [{offered}], the plugin supports [1]",
              file=sys.stderr)
        return 1
    version = max(common)
    # 3. Listen, with the message-size limit, serving every service.
    socket = os.environ["PLUGD_SOCKET"]
    limit = int(os.environ.get("PLUGD_MAX_MESSAGE_BYTES") or 64 << 20)
    grace = int(os.environ.get("PLUGD_SHUTDOWN_GRACE_MS") or 5000) / 1000
    # SIGTERM/SIGINT must reach the main thread (only it runs Python signal
    # handlers, and a signal taken by a gRPC thread would not wake stop.wait):
    # block them while gRPC starts its threads, which inherit the block.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", limit),
                                  ("grpc.max_send_message_length", limit)])
    health_pb2_grpc.add_HealthServicer_to_server(Health(), server)
    plugin_pb2_grpc.add_ControlServicer_to_server(Control(version), server)
    plugin_pb2_grpc.add_FunctionsServicer_to_server(Functions(), server)
    if os.path.exists(socket):
        os.unlink(socket)
    server.add_insecure_port("unix:" + socket)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    # 4. The handshake, only now, flushed.
    sys.stdout.write(f"1|{version}|unix|{socket}|grpc\n")
    sys.stdout.flush()
    # 5. Logs go to stderr.
    print("[INFO] nosdk-echo serving", file=sys.stderr, flush=True)
    # 6. Stop gracefully: NOT_SERVING, end Watch streams, finish calls, exit 0.
    stop.wait()
    stopping.set()
    server.stop(grace).wait()
    print("[INFO] nosdk-echo stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
