"""plugd_sdk: write plugd plugins in Python.

    import plugd_sdk

    plugin = plugd_sdk.Plugin("stats", "1.0.0")

    @plugin.function(at_least_one=True)
    def mean(*x: float) -> float:
        "mean X...: the arithmetic mean"
        return sum(x) / len(x)

    if __name__ == "__main__":
        raise SystemExit(plugin.serve())

See docs/writing-plugins.md and, for the protocol it implements,
docs/protocol.md.
"""
from ._functions import CallError, Function, Kind, Param, Registry
from ._plugin import EXIT_ERROR, EXIT_OK, MAGIC_COOKIE, Plugin

__all__ = [
    "CallError", "Function", "Kind", "Param", "Registry",
    "EXIT_ERROR", "EXIT_OK", "MAGIC_COOKIE", "Plugin",
]
