"""Plugin: the launch environment, the gRPC server, health, control, shutdown."""
import logging
import os
import signal
import sys
import tempfile
import threading
from concurrent import futures

import grpc

from goplugin import (grpc_broker_pb2, grpc_broker_pb2_grpc,
                      grpc_controller_pb2, grpc_controller_pb2_grpc)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from plugd.v1 import plugin_pb2, plugin_pb2_grpc

from ._functions import CallError, Function, Registry

MAGIC_COOKIE = "d5a1f0c2-plugd-plugin-7e3b94c6"
CORE_PROTOCOL_VERSION = 1
EXIT_OK = 0
EXIT_ERROR = 1

log = logging.getLogger("plugd")

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class _SetupError(Exception):
    pass


class _LevelFormatter(logging.Formatter):
    """'[LEVEL] message', the format plugd launchers read levels from."""
    _NAMES = {"WARNING": "WARN", "CRITICAL": "ERROR"}

    def format(self, record):
        level = self._NAMES.get(record.levelname, record.levelname)
        text = f"[{level}] {record.getMessage()}"
        if record.exc_info:
            text += " " + self.formatException(record.exc_info).replace("\n", " | ")
        return text


def _setup_logging():
    root = logging.getLogger()
    if root.handlers:
        return  # the author configured logging
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LevelFormatter())
    root.addHandler(handler)
    level = os.environ.get("PLUGD_LOG_LEVEL", "info").upper()
    root.setLevel({"WARN": "WARNING"}.get(level, level)
                  if level in ("DEBUG", "INFO", "WARN", "WARNING", "ERROR")
                  else "INFO")


class _Recorder:
    """Passed to add_XServicer_to_server: records the handlers' service names."""

    def __init__(self):
        self.handlers = []

    def add_generic_rpc_handlers(self, handlers):
        self.handlers.extend(handlers)


class _Health(health_pb2_grpc.HealthServicer):
    def __init__(self, names):
        self._names = set(names)
        self._serving = True
        self._closed = False
        self._cond = threading.Condition()

    def set_serving(self, serving):
        with self._cond:
            if self._closed:
                return
            self._serving = serving
            self._cond.notify_all()

    def close(self):
        """NOT_SERVING, and every Watch stream ends."""
        with self._cond:
            self._serving = False
            self._closed = True
            self._cond.notify_all()

    def _status(self, service):
        if service not in self._names:
            return _UNKNOWN
        return _SERVING if self._serving else _NOT_SERVING

    def Check(self, request, context):
        with self._cond:
            status = self._status(request.service)
        if status == _UNKNOWN:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(self, request, context):
        def wake():
            with self._cond:
                self._cond.notify_all()
        context.add_callback(wake)  # the client went away
        last = None
        while True:
            with self._cond:
                while (self._status(request.service) == last
                       and not self._closed and context.is_active()):
                    self._cond.wait()
                status, closed = self._status(request.service), self._closed
            if not context.is_active():
                return
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            if closed:
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              "the plugin is shutting down")


class _Control(plugin_pb2_grpc.ControlServicer):
    def __init__(self, plugin):
        self._plugin = plugin

    def Describe(self, request, context):
        p = self._plugin
        return plugin_pb2.DescribeResponse(
            name=p.name, version=p.version,
            protocol_version=p.protocol_version,
            core_protocol_version=CORE_PROTOCOL_VERSION,
            services=p.services, functions=p._registry.infos(),
            pid=os.getpid())

    def Shutdown(self, request, context):
        log.info("shutdown requested%s",
                 f" ({request.reason})" if request.reason else "")
        # Once the answer is sent.
        context.add_callback(self._plugin.shutdown)
        return plugin_pb2.ShutdownResponse()


class _GoPluginController(grpc_controller_pb2_grpc.GRPCControllerServicer):
    """go-plugin's plugin.GRPCController: a go-plugin host's client.Kill()
    calls Shutdown and gives the plugin 2 s to exit before killing it."""

    def __init__(self, plugin):
        self._plugin = plugin

    def Shutdown(self, request, context):
        log.info("shutdown requested (plugin.GRPCController/Shutdown)")
        context.add_callback(self._plugin.shutdown)  # once answered
        return grpc_controller_pb2.Empty()


class _GoPluginBroker(grpc_broker_pb2_grpc.GRPCBrokerServicer):
    """go-plugin's plugin.GRPCBroker: the stream a go-plugin host opens on
    every connection is accepted and kept; what it sends is ignored (no
    brokered connections); it ends when the host closes it or at close()."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open = set()  # one Event per open stream
        self._closed = False

    def close(self):
        """Ends every open stream (OK), and every later one at once."""
        with self._lock:
            self._closed = True
            for ended in self._open:
                ended.set()

    def StartStream(self, request_iterator, context):
        ended = threading.Event()
        with self._lock:
            if self._closed:
                return
            self._open.add(ended)

        def drain():
            try:
                for info in request_iterator:
                    log.debug("go-plugin broker: ignoring the host's brokered "
                              "connection %d (%s %s)", info.service_id,
                              info.network, info.address)
            except Exception:
                pass  # the call ended
            ended.set()

        threading.Thread(target=drain, daemon=True).start()
        context.add_callback(ended.set)
        ended.wait()
        with self._lock:
            self._open.discard(ended)
        # A generator that yields nothing: the stream ends with OK.
        yield from ()


class _Functions(plugin_pb2_grpc.FunctionsServicer):
    def __init__(self, registry):
        self._registry = registry

    def ListFunctions(self, request, context):
        return plugin_pb2.ListFunctionsResponse(functions=self._registry.infos())

    def Call(self, request, context):
        try:
            result = self._registry.call(request.function, list(request.args))
        except CallError as e:
            context.abort(e.code, e.message)
        return plugin_pb2.CallResponse(result=result)


def _env_int(name, default):
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise _SetupError(f"{name}={text!r} is not a positive whole number")
    return value


class Plugin:
    """A plugd plugin: functions and services, served by serve()."""

    def __init__(self, name, version, protocol_versions=(1,), max_workers=16,
                 go_plugin=None):
        """go_plugin: (MagicCookieKey, MagicCookieValue) of a HashiCorp
        go-plugin application whose host may also load this plugin
        (go-plugin mode; docs/go-plugin.md)."""
        self.name = name
        self.version = version
        self.protocol_versions = tuple(protocol_versions)
        if go_plugin is not None:
            key, value = go_plugin
            if not key or "=" in key or not value:
                raise ValueError("go_plugin must be (MagicCookieKey, "
                                 "MagicCookieValue), both non-empty, the key "
                                 "without '='")
            go_plugin = (key, value)
        self.go_plugin = go_plugin
        self.go_plugin_mode = False
        self.protocol_version = 0
        self.services = []
        self._registry = Registry(name)
        self._services = []  # (add_to_server, servicer)
        self._on_start = []
        self._on_shutdown = []
        self._max_workers = max_workers
        self._stop = threading.Event()
        self._shutting_down = False
        self._health = None

    # --- building the plugin -------------------------------------------

    def function(self, fn=None, *, name=None, help=None, at_least_one=False):
        """Decorator: offers a function through plugd.v1.Functions.

        @plugin.function               name, help and parameters from fn
        @plugin.function(name="x", help="x A: ...", at_least_one=True)
        """
        def register(f):
            self._registry.add(Function(f, name=name, help=help,
                                        at_least_one=at_least_one))
            return f
        return register(fn) if fn is not None else register

    def add_service(self, add_to_server, servicer):
        """Serves a generated service: add_service(add_KVServicer_to_server, s)."""
        self._services.append((add_to_server, servicer))
        return self

    def on_start(self, fn):
        """Runs fn() after the environment is checked, before listening.
        An exception stops the plugin with exit code 1. Usable as a decorator."""
        self._on_start.append(fn)
        return fn

    def on_shutdown(self, fn):
        """Runs fn() once when shutdown begins, before the server stops."""
        self._on_shutdown.append(fn)
        return fn

    # --- at run time ---------------------------------------------------

    @property
    def shutting_down(self):
        return self._shutting_down

    def shutdown(self):
        """Starts a graceful shutdown; any thread, idempotent."""
        self._stop.set()

    def set_serving(self, serving):
        """Health of every served name: SERVING (True) or NOT_SERVING."""
        if self._health is not None:
            self._health.set_serving(serving)

    def _negotiate(self):
        variable = ("PLUGIN_PROTOCOL_VERSIONS" if self.go_plugin_mode
                    else "PLUGD_PROTOCOL_VERSIONS")
        text = os.environ.get(variable, "")
        if not text and self.go_plugin_mode:
            # go-plugin's rule: a host that names no versions gets the oldest.
            return min(self.protocol_versions)
        text = text or "1"
        try:
            host = sorted({int(v) for v in text.split(",")})
        except ValueError:
            raise _SetupError(f"{variable}={text!r} is malformed; "
                              "expected e.g. 1 or 1,2")
        common = set(host) & set(self.protocol_versions)
        if not common:
            fmt = lambda vs: "[" + ",".join(str(v) for v in sorted(vs)) + "]"
            message = (f"no protocol version in common: the host supports "
                       f"{fmt(host)}, the plugin supports "
                       f"{fmt(self.protocol_versions)}; upgrade whichever side "
                       "is older")
            if not self.go_plugin_mode:
                raise _SetupError(message)
            # As go-plugin's own plugins do: announce the lowest version, so
            # that the go-plugin host reports the mismatch itself.
            lowest = min(self.protocol_versions)
            log.warning("%s; announcing version %d as go-plugin plugins do, "
                        "so that the go-plugin host reports the mismatch",
                        message, lowest)
            return lowest
        return max(common)

    def _refusal(self):
        """What a plugin run without a launcher's cookie prints."""
        if "PLUGIN_PROTOCOL_VERSIONS" in os.environ:
            text = (f"This binary is a plugin (plugd plugin {self.name} "
                    f"{self.version}), not meant to be executed directly.\n"
                    "A go-plugin host started it (PLUGIN_PROTOCOL_VERSIONS is "
                    "set) ")
            if self.go_plugin:
                key, value = self.go_plugin
                return text + ("without the magic cookie it accepts:\nthe "
                               "host's plugin.HandshakeConfig must have "
                               f'MagicCookieKey "{key}" and MagicCookieValue '
                               f'"{value}".')
            return text + ("but this plugin accepts no go-plugin magic cookie\n"
                           "(Plugin(go_plugin=...) is unset; see "
                           "docs/go-plugin.md).")
        text = (f"This is a plugd plugin ({self.name} {self.version}); it is "
                "not meant to be run by hand.\nRun it through a plugd host, "
                "e.g. `calc --plugin PATH --list`, or under the plugd broker")
        if self.go_plugin:
            key, value = self.go_plugin
            text += (", or from a go-plugin host whose HandshakeConfig has "
                     f'MagicCookieKey "{key}" and MagicCookieValue "{value}"')
        return text + "."

    def _pick_socket(self):
        """go-plugin mode without PLUGD_SOCKET: a socket of our own in
        $TMPDIR (default /tmp), as go-plugin creates $TMPDIR/pluginNNN."""
        directory = os.environ.get("TMPDIR") or "/tmp"
        try:
            fd, path = tempfile.mkstemp(prefix="plugd", dir=directory)
        except OSError as e:
            raise _SetupError(f"cannot pick a socket in {directory}: {e} "
                              "(set TMPDIR to a writable directory)")
        os.close(fd)
        os.unlink(path)
        if len(path.encode()) > 107:
            raise _SetupError(f"cannot pick a socket in TMPDIR={directory!r}: "
                              "Unix socket paths are limited to 107 bytes; set "
                              "TMPDIR to a shorter directory")
        return path

    def serve(self):
        """Serves until shutdown; returns the exit code (0 after a graceful
        stop, 1 when the plugin cannot start). Call from the main thread."""
        plugd_mode = os.environ.get("PLUGD_MAGIC_COOKIE") == MAGIC_COOKIE
        self.go_plugin_mode = (not plugd_mode and self.go_plugin is not None
                               and os.environ.get(self.go_plugin[0])
                               == self.go_plugin[1])
        if not plugd_mode and not self.go_plugin_mode:
            print(self._refusal(), file=sys.stderr)
            return EXIT_ERROR
        _setup_logging()
        try:
            server = self._start()
        except _SetupError as e:
            print(f"plugd plugin {self.name}: {e}", file=sys.stderr, flush=True)
            return EXIT_ERROR
        self._stop.wait()
        return self._stop_server(server)

    def _start(self):
        self.protocol_version = self._negotiate()
        socket = os.environ.get("PLUGD_SOCKET", "")
        if not socket and self.go_plugin_mode:
            socket = self._pick_socket()
        if not socket.startswith("/"):
            raise _SetupError("PLUGD_SOCKET must be an absolute socket path; "
                              f"got {socket!r}")
        max_bytes = _env_int("PLUGD_MAX_MESSAGE_BYTES", 64 << 20)
        self._grace = _env_int("PLUGD_SHUTDOWN_GRACE_MS", 5000) / 1000.0
        for hook in self._on_start:
            try:
                hook()
            except Exception as e:
                raise _SetupError(str(e)) from e

        # SIGTERM/SIGINT must reach the main thread: a Python handler runs
        # only there, and a signal the kernel hands to one of gRPC's threads
        # would not wake the main thread's wait. gRPC's threads (all started
        # from here on) inherit the block; the main thread lifts it once the
        # server runs (a signal that came meanwhile is delivered then).
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers,
                                       thread_name_prefix="plugd"),
            options=[("grpc.max_receive_message_length", max_bytes),
                     ("grpc.max_send_message_length", max_bytes),
                     ("grpc.so_reuseport", 0)])
        names = ["grpc.health.v1.Health", "plugd.v1.Control"]
        if self._registry.functions:
            names.append("plugd.v1.Functions")
        for add_to_server, servicer in self._services:
            recorder = _Recorder()
            add_to_server(servicer, recorder)
            for handler in recorder.handlers:
                service = handler.service_name()
                if service in names:
                    raise _SetupError(f"service {service} is served twice")
                names.append(service)
            server.add_generic_rpc_handlers(tuple(recorder.handlers))
        self.services = names
        self._health = _Health(["", "plugin"] + names)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        plugin_pb2_grpc.add_ControlServicer_to_server(_Control(self), server)
        if self._registry.functions:
            plugin_pb2_grpc.add_FunctionsServicer_to_server(
                _Functions(self._registry), server)
        self._go_plugin_broker = None
        if self.go_plugin_mode:
            grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(
                _GoPluginController(self), server)
            self._go_plugin_broker = _GoPluginBroker()
            grpc_broker_pb2_grpc.add_GRPCBrokerServicer_to_server(
                self._go_plugin_broker, server)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self._stop.set())
        try:
            os.unlink(socket)
        except FileNotFoundError:
            pass
        try:
            port = server.add_insecure_port("unix:" + socket)
        except RuntimeError as e:
            port = 0
        if port == 0:
            raise _SetupError(f"cannot listen on unix:{socket}")
        server.start()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        self._socket = socket
        # Listening: announce it, unbuffered.
        os.write(1, f"{CORE_PROTOCOL_VERSION}|{self.protocol_version}|unix|"
                    f"{socket}|grpc\n".encode())
        log.info("%s %s serving on %s%s", self.name, self.version, socket,
                 " (go-plugin mode)" if self.go_plugin_mode else "")
        return server

    def _stop_server(self, server):
        self._shutting_down = True
        self._health.close()
        if self._go_plugin_broker is not None:
            self._go_plugin_broker.close()
        for hook in self._on_shutdown:
            try:
                hook()
            except Exception:
                log.exception("an on_shutdown hook failed")
        server.stop(self._grace).wait()
        try:
            os.unlink(self._socket)
        except OSError:
            pass
        log.info("%s stopped", self.name)
        sys.stdout.flush()
        sys.stderr.flush()
        return EXIT_OK
