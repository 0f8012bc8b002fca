#!/usr/bin/python3
"""plugd-py-echo: the benchmark's echo.v1.Echo plugin in Python.

Serves echo.v1.Echo (proto/examples/echo/v1/echo.proto) through the Python
SDK, so that the benchmark (docs/benchmarks.md) can compare a Python plugin's
call latency and cold start with the C++ one's (plugd-echo).
"""
import os
import sys

# Keep this script's directory off the path: "echo" below is the generated
# echo.v1 package, not this file.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(
        os.path.abspath(__file__)):
    del sys.path[0]

import plugd_sdk
from echo.v1 import echo_pb2, echo_pb2_grpc


class Echo(echo_pb2_grpc.EchoServicer):
    def Echo(self, request, context):
        return echo_pb2.EchoResponse(payload=request.payload)


def main():
    plugin = plugd_sdk.Plugin("py-echo", "1.0.0")
    plugin.add_service(echo_pb2_grpc.add_EchoServicer_to_server, Echo())
    return plugin.serve()


if __name__ == "__main__":
    raise SystemExit(main())
