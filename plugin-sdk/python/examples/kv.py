#!/usr/bin/python3
"""plugd-py-kv: the kv.v1.KV service (proto/examples/kv/v1/kv.proto) in Python.

The data file is --data FILE (or --data=FILE), else $KV_DATA_FILE, else
kv-data.pb in the working directory; the format is plugd-kv's (C++), so the
two read each other's files: the line "plugd-kv 1", then kv.v1.Entry messages,
each preceded by its varint length. Every Put and Delete rewrites the file
atomically before answering.
"""
import argparse
import logging
import os
import sys
import threading

# This file is kv.py: keep its own directory off the path, so that "kv" below
# is the generated kv.v1 package, not this script.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(
        os.path.abspath(__file__)):
    del sys.path[0]

import grpc

import plugd_sdk
from kv.v1 import kv_pb2, kv_pb2_grpc

MAGIC = b"plugd-kv 1\n"
# The KV example application's go-plugin cookie, as plugd-kv (C++) accepts:
# a go-plugin host with this HandshakeConfig can load plugd-py-kv too.
GO_PLUGIN_COOKIE = "KV_PLUGIN=plugd-kv-example-1"
log = logging.getLogger("kv")


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data, pos):
    shift = result = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated length")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


class Store:
    def __init__(self, path):
        self.path = path
        self.data = {}
        self.lock = threading.Lock()

    def load(self):
        try:
            with open(self.path, "rb") as f:
                contents = f.read()
        except FileNotFoundError:
            return
        if not contents:
            return

        def corrupt(why):
            return ValueError(f"the data file {self.path} is corrupt ({why}); "
                              "move it away to start with an empty store")
        if not contents.startswith(MAGIC):
            raise corrupt('it does not start with "plugd-kv 1"')
        data, pos = {}, len(MAGIC)
        while pos < len(contents):
            try:
                size, pos = _read_varint(contents, pos)
                if pos + size > len(contents):
                    raise ValueError("truncated entry")
                entry = kv_pb2.Entry.FromString(contents[pos:pos + size])
            except Exception:
                raise corrupt(f"entry {len(data) + 1} is unreadable")
            pos += size
            data[entry.key] = entry.value
        self.data = data
        log.info("loaded %d keys from %s", len(data), self.path)

    def save_locked(self):
        parts = [MAGIC]
        for key in sorted(self.data):
            blob = kv_pb2.Entry(key=key, value=self.data[key]).SerializeToString()
            parts += [_varint(len(blob)), blob]
        temp = self.path + ".tmp"
        with open(temp, "wb") as f:
            f.write(b"".join(parts))
            f.flush()
            os.fsync(f.fileno())
        os.rename(temp, self.path)
        fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class KV(kv_pb2_grpc.KVServicer):
    def __init__(self, store, plugin):
        self.store = store
        self.plugin = plugin

    @staticmethod
    def _check_key(key, context):
        if not key:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the key is empty")

    def Get(self, request, context):
        self._check_key(request.key, context)
        with self.store.lock:
            value = self.store.data.get(request.key)
        if value is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no key {request.key!r}")
        return kv_pb2.GetResponse(value=value)

    def Put(self, request, context):
        self._check_key(request.key, context)
        with self.store.lock:
            self.store.data[request.key] = request.value
            self.store.save_locked()
        return kv_pb2.PutResponse()

    def Delete(self, request, context):
        self._check_key(request.key, context)
        with self.store.lock:
            existed = self.store.data.pop(request.key, None) is not None
            if existed:
                self.store.save_locked()
        return kv_pb2.DeleteResponse(existed=existed)

    def _matching(self, prefix):
        with self.store.lock:
            return sorted((k, v) for k, v in self.store.data.items()
                          if k.startswith(prefix))

    def List(self, request, context):
        return kv_pb2.ListResponse(
            keys=[k for k, _ in self._matching(request.prefix)])

    def Scan(self, request, context):
        for key, value in self._matching(request.prefix):
            if self.plugin.shutting_down:
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              "the plugin is shutting down")
            yield kv_pb2.Entry(key=key, value=value)


def main():
    parser = argparse.ArgumentParser(description="plugd KV plugin")
    parser.add_argument("--data", default=os.environ.get("KV_DATA_FILE")
                        or "kv-data.pb", help="the data file")
    parser.add_argument("--go-plugin-cookie", default=GO_PLUGIN_COOKIE,
                        metavar="KEY=VALUE",
                        help="the go-plugin cookie accepted (go-plugin mode, "
                             "docs/go-plugin.md); default: the KV example "
                             "application's")
    args = parser.parse_args()
    key, _, value = args.go_plugin_cookie.partition("=")
    if not key or not value:
        parser.error("--go-plugin-cookie wants KEY=VALUE")

    plugin = plugd_sdk.Plugin("kv", "1.0.0", go_plugin=(key, value))
    store = Store(args.data)
    plugin.on_start(store.load)
    plugin.add_service(kv_pb2_grpc.add_KVServicer_to_server, KV(store, plugin))
    return plugin.serve()


if __name__ == "__main__":
    raise SystemExit(main())
