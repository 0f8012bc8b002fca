"""The function registry behind plugd.v1.Functions.

A function's parameters come from its Python signature: a parameter's
annotation gives its kind (float and int: number, str, bool, list, dict; no
annotation: any), a default makes it optional and *args makes it variadic.
Arguments are checked and converted before the function runs, so it sees
Python values of the declared kinds; a mismatch is INVALID_ARGUMENT naming
the function, the position and the parameter.
"""
import enum
import inspect
import math

import grpc
from google.protobuf import struct_pb2

from plugd.v1 import plugin_pb2


class CallError(Exception):
    """Raise from a function to fail the call with a gRPC status code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def invalid_argument(cls, message):
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)


class Kind(enum.IntEnum):
    ANY = plugin_pb2.VALUE_KIND_UNSPECIFIED
    NUMBER = plugin_pb2.VALUE_KIND_NUMBER
    STRING = plugin_pb2.VALUE_KIND_STRING
    BOOL = plugin_pb2.VALUE_KIND_BOOL
    LIST = plugin_pb2.VALUE_KIND_LIST
    STRUCT = plugin_pb2.VALUE_KIND_STRUCT


_KINDS = {float: Kind.NUMBER, int: Kind.NUMBER, str: Kind.STRING,
          bool: Kind.BOOL, list: Kind.LIST, dict: Kind.STRUCT}


class Param:
    """One parameter: name, kind, optional, variadic, help; `whole` for int."""

    def __init__(self, name, kind=Kind.ANY, optional=False, variadic=False,
                 help="", whole=False):
        self.name, self.kind, self.optional = name, kind, optional
        self.variadic, self.help, self.whole = variadic, help, whole


def from_value(value):
    """google.protobuf.Value -> None, bool, float, str, list or dict."""
    which = value.WhichOneof("kind")
    if which == "number_value":
        return value.number_value
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "list_value":
        return [from_value(v) for v in value.list_value.values]
    if which == "struct_value":
        return {k: from_value(v) for k, v in value.struct_value.fields.items()}
    return None


def to_value(obj):
    """A Python value (None, bool, int, float, str, list/tuple, dict) -> Value."""
    value = struct_pb2.Value()
    if obj is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(obj, bool):
        value.bool_value = obj
    elif isinstance(obj, (int, float)):
        value.number_value = float(obj)
    elif isinstance(obj, str):
        value.string_value = obj
    elif isinstance(obj, (list, tuple)):
        value.list_value.values.extend(to_value(v) for v in obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            value.struct_value.fields[str(k)].CopyFrom(to_value(v))
    else:
        raise TypeError(f"cannot return a {type(obj).__name__} as a Value")
    return value


def describe_value(value):
    """'string "two"', 'number 2.5', ... for error messages."""
    py = from_value(value)
    which = value.WhichOneof("kind")
    if which == "string_value":
        return f'string "{py}"'
    if which == "number_value":
        return f"number {py:g}"
    if which == "bool_value":
        return f"bool {'true' if py else 'false'}"
    if which == "list_value":
        return "a list"
    if which == "struct_value":
        return "a struct"
    return "null"


class Function:
    def __init__(self, fn, name=None, help=None, at_least_one=False):
        self.fn = fn
        self.name = name or fn.__name__
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"function name {self.name!r} must be non-empty "
                             "and have no whitespace")
        self.params = []
        for p in inspect.signature(fn).parameters.values():
            kind = _KINDS.get(p.annotation, Kind.ANY)
            if p.kind == p.VAR_POSITIONAL:
                self.params.append(Param(p.name, kind, optional=not at_least_one,
                                         variadic=True, whole=p.annotation is int))
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                self.params.append(Param(p.name, kind,
                                         optional=p.default is not p.empty,
                                         whole=p.annotation is int))
            else:
                raise ValueError(f"function {self.name}: parameter {p.name} "
                                 "must be positional")
        self.help = help or inspect.getdoc(fn) or self.usage()

    def arity(self):
        required = sum(1 for p in self.params if not p.optional)
        if self.params and self.params[-1].variadic:
            return required, -1
        return required, len(self.params)

    def usage(self):
        out, open_ = self.name, 0
        for p in self.params:
            name = p.name.upper() + ("..." if p.variadic else "")
            if p.optional:
                out += " [" + name
                open_ += 1
            else:
                out += " " + name
        return out + "]" * open_

    def info(self):
        lo, hi = self.arity()
        return plugin_pb2.FunctionInfo(
            name=self.name, help=self.help, min_args=lo, max_args=hi,
            params=[plugin_pb2.Parameter(name=p.name, kind=int(p.kind),
                                         optional=p.optional,
                                         variadic=p.variadic, help=p.help)
                    for p in self.params])

    def convert(self, index, param, value):
        """Checks argument `index` (0-based) against `param`; a Python value."""
        which = value.WhichOneof("kind")

        def bad(expected):
            return CallError.invalid_argument(
                f"{self.name}: argument {index + 1} ({param.name}) must be "
                f"{expected}, got {describe_value(value)}")

        if param.kind == Kind.NUMBER:
            if which == "number_value":
                x = value.number_value
            elif which == "string_value":
                try:
                    x = float(value.string_value.strip())
                except ValueError:
                    raise bad("a whole number" if param.whole else "a number")
            else:
                raise bad("a whole number" if param.whole else "a number")
            if param.whole:
                if not math.isfinite(x) or x != int(x):
                    raise bad("a whole number")
                return int(x)
            return x
        if param.kind == Kind.STRING:
            if which != "string_value":
                raise bad("a string")
            return value.string_value
        if param.kind == Kind.BOOL:
            if which == "bool_value":
                return value.bool_value
            if which == "string_value" and value.string_value in ("true", "false"):
                return value.string_value == "true"
            raise bad("true or false")
        if param.kind == Kind.LIST:
            if which != "list_value":
                raise bad("a list")
        if param.kind == Kind.STRUCT:
            if which != "struct_value":
                raise bad("a struct")
        return from_value(value)

    def call(self, args):
        lo, hi = self.arity()
        n = len(args)
        if n < lo or (hi >= 0 and n > hi):
            plural = lambda k: f"{k} argument" + ("" if k == 1 else "s")
            if hi < 0:
                expected = "at least " + plural(lo)
            elif lo == hi:
                expected = plural(lo)
            else:
                expected = f"{lo} to {plural(hi)}"
            raise CallError.invalid_argument(
                f"{self.name}: expected {expected} ({self.usage()}), got {n}")
        py_args = []
        for i, value in enumerate(args):
            param = self.params[min(i, len(self.params) - 1)]
            py_args.append(self.convert(i, param, value))
        return to_value(self.fn(*py_args))


class Registry:
    """Functions by name; what plugd.v1.Functions serves."""

    def __init__(self, plugin_name):
        self.plugin_name = plugin_name
        self.functions = {}

    def add(self, function):
        if function.name in self.functions:
            raise ValueError(f"function {function.name} is defined twice")
        self.functions[function.name] = function

    def infos(self):
        return [self.functions[n].info() for n in sorted(self.functions)]

    def call(self, name, args):
        """Runs a function: a Value, or raises CallError."""
        function = self.functions.get(name)
        if function is None:
            offers = (": " + ", ".join(sorted(self.functions))
                      if self.functions else " none")
            raise CallError(grpc.StatusCode.NOT_FOUND,
                            f'no function "{name}" in plugin '
                            f"{self.plugin_name}; it offers{offers}")
        try:
            return function.call(args)
        except CallError:
            raise
        except ValueError as e:
            raise CallError.invalid_argument(f"{name}: {e}")
        except Exception as e:  # the function's own bug
            raise CallError(grpc.StatusCode.INTERNAL,
                            f"{name}: raised {type(e).__name__}: {e}")
