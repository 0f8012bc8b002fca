'use strict';
// plugd-sdk: write plugd plugins in Node.js.
//
//   const { Plugin } = require('plugd-sdk');   // or require('../plugin-sdk/node')
//   const plugin = new Plugin({ name: 'strings', version: '1.0.0' });
//   plugin.function('upper', {
//     help: 'upper S: S in upper case',
//     params: [{ name: 's', kind: 'string' }],
//   }, (s) => s.toUpperCase());
//   plugin.serve();
//
// It implements docs/protocol.md: the cookie check, version negotiation, a
// gRPC server on PLUGD_SOCKET serving grpc.health.v1.Health, plugd.v1.Control,
// plugd.v1.Functions (when functions are added) and the author's services,
// the handshake line, '[LEVEL] message' logs on stderr and a graceful
// shutdown on Control.Shutdown, SIGTERM and SIGINT. With the goPlugin option
// it also runs under a HashiCorp go-plugin host (docs/go-plugin.md).
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const MAGIC_COOKIE = 'd5a1f0c2-plugd-plugin-7e3b94c6';
const CORE_PROTOCOL_VERSION = 1;
const EXIT_OK = 0;
const EXIT_ERROR = 1;

// Where .proto files are looked up: $PLUGD_PROTO_PATH (colon separated), the
// repository's proto/ and proto/examples/, and Debian's grpc-proto package
// (grpc/health/v1/health.proto).
const PROTO_DIRS = [
  ...(process.env.PLUGD_PROTO_PATH || '').split(':').filter(Boolean),
  path.resolve(__dirname, '../../proto'),
  path.resolve(__dirname, '../../proto/examples'),
  '/usr/share/grpc-proto',
];
const LOADER_OPTIONS = {
  keepCase: false, longs: Number, enums: Number, defaults: true, oneofs: true,
  includeDirs: PROTO_DIRS,
};

// Loads .proto files (paths relative to PROTO_DIRS) into a grpc-js package
// object: loadProto('kv/v1/kv.proto').kv.v1.KV.service.
function loadProto(...files) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(files, LOADER_OPTIONS));
}

// --- logs -------------------------------------------------------------------

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 };
const minLevel = LEVELS[(process.env.PLUGD_LOG_LEVEL || 'info').toLowerCase()] || 20;
function logAt(level) {
  return (...parts) => {
    if (LEVELS[level] < minLevel) return;
    const text = parts.map((p) => (typeof p === 'string' ? p : String(p))).join(' ');
    // One line per message; synchronous, so nothing is lost at exit.
    fs.writeSync(2, `[${level.toUpperCase()}] ${text.replace(/\n/g, ' | ')}\n`);
  };
}
const log = {
  debug: logAt('debug'), info: logAt('info'), warn: logAt('warn'), error: logAt('error'),
};

// --- functions --------------------------------------------------------------

// Thrown by a function (or the SDK) to fail a call with a gRPC status.
class CallError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
  static invalidArgument(message) {
    return new CallError(grpc.status.INVALID_ARGUMENT, message);
  }
}

// Parameter kinds, as plugd.v1.ValueKind.
const Kind = { any: 0, number: 1, string: 2, bool: 3, list: 4, struct: 5 };

function fromValue(v) {
  switch (v && v.kind) {
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'listValue': return (v.listValue.values || []).map(fromValue);
    case 'structValue': {
      const out = {};
      for (const [k, x] of Object.entries(v.structValue.fields || {})) out[k] = fromValue(x);
      return out;
    }
    default: return null;
  }
}

function toValue(x) {
  if (x === null || x === undefined) return { nullValue: 0 };
  if (typeof x === 'boolean') return { boolValue: x };
  if (typeof x === 'number') return { numberValue: x };
  if (typeof x === 'bigint') return { numberValue: Number(x) };
  if (typeof x === 'string') return { stringValue: x };
  if (Array.isArray(x)) return { listValue: { values: x.map(toValue) } };
  if (typeof x === 'object') {
    const fields = {};
    for (const [k, y] of Object.entries(x)) fields[k] = toValue(y);
    return { structValue: { fields } };
  }
  throw new TypeError(`cannot return a ${typeof x} as a Value`);
}

function describeValue(v) {
  switch (v && v.kind) {
    case 'numberValue': return `number ${v.numberValue}`;
    case 'stringValue': return `string "${v.stringValue}"`;
    case 'boolValue': return `bool ${v.boolValue}`;
    case 'listValue': return 'a list';
    case 'structValue': return 'a struct';
    default: return 'null';
  }
}

class Registry {
  constructor(pluginName) {
    this.pluginName = pluginName;
    this.functions = new Map();
  }

  // params: [{ name, kind: 'number'|'string'|'bool'|'list'|'struct'|'any',
  //            optional, variadic, help }], required first, then optional,
  //         then at most one variadic (optional unless atLeastOne).
  add(name, { help, params = [] } = {}, impl) {
    if (typeof impl !== 'function') throw new TypeError(`function ${name}: no implementation`);
    if (!name || /\s/.test(name)) throw new Error(`function name "${name}" must be non-empty, without whitespace`);
    if (this.functions.has(name)) throw new Error(`function ${name} is defined twice`);
    const ps = params.map((p, i) => {
      if (!((p.kind || 'any') in Kind)) throw new Error(`function ${name}: unknown kind ${p.kind}`);
      if (p.variadic && i !== params.length - 1) throw new Error(`function ${name}: only the last parameter may be variadic`);
      return {
        name: p.name, kind: p.kind || 'any', help: p.help || '',
        variadic: !!p.variadic, optional: p.variadic ? !p.atLeastOne : !!p.optional,
      };
    });
    ps.forEach((p, i) => {
      if (!p.optional && i > 0 && ps[i - 1].optional) {
        throw new Error(`function ${name}: required parameter ${p.name} after an optional one`);
      }
    });
    const fn = { name, params: ps, impl };
    fn.help = help || this.usage(fn);
    this.functions.set(name, fn);
  }

  arity(fn) {
    const min = fn.params.filter((p) => !p.optional).length;
    const variadic = fn.params.length > 0 && fn.params[fn.params.length - 1].variadic;
    return [min, variadic ? -1 : fn.params.length];
  }

  usage(fn) {
    let out = fn.name;
    let open = 0;
    for (const p of fn.params) {
      const n = p.name.toUpperCase() + (p.variadic ? '...' : '');
      if (p.optional) { out += ` [${n}`; open += 1; } else out += ` ${n}`;
    }
    return out + ']'.repeat(open);
  }

  infos() {
    return [...this.functions.keys()].sort().map((name) => {
      const fn = this.functions.get(name);
      const [min, max] = this.arity(fn);
      return {
        name, help: fn.help, minArgs: min, maxArgs: max,
        params: fn.params.map((p) => ({
          name: p.name, kind: Kind[p.kind], optional: p.optional,
          variadic: p.variadic, help: p.help,
        })),
      };
    });
  }

  convert(fn, i, param, v) {
    const bad = (expected) => CallError.invalidArgument(
      `${fn.name}: argument ${i + 1} (${param.name}) must be ${expected}, got ${describeValue(v)}`);
    switch (param.kind) {
      case 'number': {
        if (v.kind === 'numberValue') return v.numberValue;
        if (v.kind === 'stringValue' && v.stringValue.trim() !== '' && !Number.isNaN(Number(v.stringValue))) {
          return Number(v.stringValue);
        }
        throw bad('a number');
      }
      case 'string':
        if (v.kind === 'stringValue') return v.stringValue;
        throw bad('a string');
      case 'bool':
        if (v.kind === 'boolValue') return v.boolValue;
        if (v.kind === 'stringValue' && (v.stringValue === 'true' || v.stringValue === 'false')) {
          return v.stringValue === 'true';
        }
        throw bad('true or false');
      case 'list':
        if (v.kind !== 'listValue') throw bad('a list');
        return fromValue(v);
      case 'struct':
        if (v.kind !== 'structValue') throw bad('a struct');
        return fromValue(v);
      default:
        return fromValue(v);
    }
  }

  // Runs a function: a Promise of a Value; rejects with a CallError.
  async call(name, args) {
    const fn = this.functions.get(name);
    if (!fn) {
      const names = [...this.functions.keys()].sort();
      throw new CallError(grpc.status.NOT_FOUND,
        `no function "${name}" in plugin ${this.pluginName}; it offers${names.length ? `: ${names.join(', ')}` : ' none'}`);
    }
    const [min, max] = this.arity(fn);
    const n = args.length;
    if (n < min || (max >= 0 && n > max)) {
      const plural = (k) => `${k} argument${k === 1 ? '' : 's'}`;
      const expected = max < 0 ? `at least ${plural(min)}`
        : min === max ? plural(min) : `${min} to ${plural(max)}`;
      throw CallError.invalidArgument(`${name}: expected ${expected} (${this.usage(fn)}), got ${n}`);
    }
    const jsArgs = args.map((v, i) => this.convert(fn, i, fn.params[Math.min(i, fn.params.length - 1)], v));
    try {
      return toValue(await fn.impl(...jsArgs));
    } catch (e) {
      if (e instanceof CallError) throw e;
      if (e instanceof RangeError || e instanceof TypeError) {
        throw CallError.invalidArgument(`${name}: ${e.message}`);
      }
      throw new CallError(grpc.status.INTERNAL, `${name}: threw ${e && e.name}: ${e && e.message}`);
    }
  }
}

// --- the plugin -------------------------------------------------------------

class SetupError extends Error {}

function envInt(name, def) {
  const text = process.env[name] || '';
  if (!text) return def;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n <= 0) throw new SetupError(`${name}="${text}" is not a positive whole number`);
  return n;
}

const SERVING = 1;
const NOT_SERVING = 2;
const SERVICE_UNKNOWN = 3;

class Plugin {
  // goPlugin: { magicCookieKey, magicCookieValue }, the handshake of a
  // go-plugin application whose host may also load this plugin (go-plugin
  // mode: its cookie, PLUGIN_PROTOCOL_VERSIONS, a socket of its own in
  // $TMPDIR, plugin.GRPCController and plugin.GRPCBroker).
  constructor({ name, version, protocolVersions = [1], goPlugin = null }) {
    this.name = name;
    this.version = version;
    this.protocolVersions = protocolVersions;
    if (goPlugin && (!goPlugin.magicCookieKey || goPlugin.magicCookieKey.includes('=')
                     || !goPlugin.magicCookieValue)) {
      throw new Error('goPlugin needs a magicCookieKey (without "=") and a magicCookieValue');
    }
    this.goPlugin = goPlugin;
    this.goPluginMode = false;
    this.brokerStreams = new Set();
    this.protocolVersion = 0;
    this.services = [];
    this.log = log;
    this.registry = new Registry(name);
    this.userServices = [];
    this.startHooks = [];
    this.shutdownHooks = [];
    this.shuttingDown = false;
    this.serving = true;
    this.watchers = new Set();
    this.healthNames = new Set();
  }

  // Offers a function through plugd.v1.Functions; see Registry.add.
  function(name, spec, impl) {
    if (typeof spec === 'function') { impl = spec; spec = {}; }
    this.registry.add(name, spec, impl);
    return this;
  }

  // Serves a grpc-js service: addService(loadProto('kv/v1/kv.proto').kv.v1.KV.service, impl).
  addService(definition, implementation) {
    this.userServices.push({ definition, implementation });
    return this;
  }

  // Runs (and awaits) fn() after the environment is checked, before listening;
  // a throw stops the plugin with exit code 1.
  onStart(fn) { this.startHooks.push(fn); return this; }

  // Runs fn() once when shutdown begins, before the server stops.
  onShutdown(fn) { this.shutdownHooks.push(fn); return this; }

  // Health of every served name: SERVING (true) or NOT_SERVING.
  setServing(serving) {
    if (this.shuttingDown) return;
    this.serving = serving;
    this.notifyWatchers();
  }

  healthOf(service) {
    if (!this.healthNames.has(service)) return SERVICE_UNKNOWN;
    return this.serving && !this.shuttingDown ? SERVING : NOT_SERVING;
  }

  notifyWatchers() {
    for (const w of this.watchers) w();
  }

  negotiate() {
    const variable = this.goPluginMode ? 'PLUGIN_PROTOCOL_VERSIONS' : 'PLUGD_PROTOCOL_VERSIONS';
    const lowest = Math.min(...this.protocolVersions);
    // go-plugin's rule: a host that names no versions gets the oldest.
    if (this.goPluginMode && !process.env[variable]) return lowest;
    const text = process.env[variable] || '1';
    const host = text.split(',').map((v) => v.trim());
    if (host.some((v) => !/^\d+$/.test(v))) {
      throw new SetupError(`${variable}="${text}" is malformed; expected e.g. 1 or 1,2`);
    }
    const hostVersions = [...new Set(host.map(Number))].sort((a, b) => a - b);
    const common = hostVersions.filter((v) => this.protocolVersions.includes(v));
    if (common.length === 0) {
      const fmt = (vs) => `[${[...vs].sort((a, b) => a - b).join(',')}]`;
      const message = `no protocol version in common: the host supports ${fmt(hostVersions)}, `
        + `the plugin supports ${fmt(this.protocolVersions)}; upgrade whichever side is older`;
      if (!this.goPluginMode) throw new SetupError(message);
      // As go-plugin's own plugins do: announce the lowest version, so that
      // the go-plugin host reports the mismatch itself.
      log.warn(`${message}; announcing version ${lowest} as go-plugin plugins do, `
        + 'so that the go-plugin host reports the mismatch');
      return lowest;
    }
    return Math.max(...common);
  }

  // What a plugin run without a launcher's cookie prints.
  refusal() {
    if (process.env.PLUGIN_PROTOCOL_VERSIONS !== undefined) {
      const text = `This binary is a plugin (plugd plugin ${this.name} ${this.version}), not meant `
        + 'to be executed directly.\nA go-plugin host started it (PLUGIN_PROTOCOL_VERSIONS is set) ';
      if (this.goPlugin) {
        return `${text}without the magic cookie it accepts:\nthe host's plugin.HandshakeConfig `
          + `must have MagicCookieKey "${this.goPlugin.magicCookieKey}" and MagicCookieValue `
          + `"${this.goPlugin.magicCookieValue}".\n`;
      }
      return `${text}but this plugin accepts no go-plugin magic cookie\n`
        + '(the goPlugin option is unset; see docs/go-plugin.md).\n';
    }
    let text = `This is a plugd plugin (${this.name} ${this.version}); it is not meant `
      + 'to be run by hand.\nRun it through a plugd host, e.g. `calc --plugin PATH --list`, '
      + 'or under the plugd broker';
    if (this.goPlugin) {
      text += ', or from a go-plugin host whose HandshakeConfig has MagicCookieKey '
        + `"${this.goPlugin.magicCookieKey}" and MagicCookieValue "${this.goPlugin.magicCookieValue}"`;
    }
    return `${text}.\n`;
  }

  // go-plugin mode without PLUGD_SOCKET: a socket of our own in $TMPDIR
  // (default /tmp), as go-plugin creates $TMPDIR/pluginNNN.
  pickSocket() {
    const dir = process.env.TMPDIR || '/tmp';
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const candidate = path.join(dir, `plugd${crypto.randomBytes(4).toString('hex')}`);
      if (Buffer.byteLength(candidate) > 107 || !candidate.startsWith('/')) {
        throw new SetupError(`cannot pick a socket in TMPDIR="${dir}": Unix socket paths are `
          + 'absolute and limited to 107 bytes; set TMPDIR to a shorter directory');
      }
      if (!fs.existsSync(candidate)) return candidate;
    }
    throw new SetupError(`cannot pick an unused socket name in ${dir}`);
  }

  // Serves until shutdown, then exits the process: 0 after a graceful stop,
  // 1 when the plugin cannot start.
  serve() {
    const plugdMode = process.env.PLUGD_MAGIC_COOKIE === MAGIC_COOKIE;
    this.goPluginMode = !plugdMode && this.goPlugin !== null
      && process.env[this.goPlugin.magicCookieKey] === this.goPlugin.magicCookieValue;
    if (!plugdMode && !this.goPluginMode) {
      process.stderr.write(this.refusal());
      process.exitCode = EXIT_ERROR;
      return;
    }
    this.start().catch((e) => {
      const text = e instanceof SetupError ? e.message : (e && e.stack) || String(e);
      fs.writeSync(2, `plugd plugin ${this.name}: ${text}\n`);
      process.exit(EXIT_ERROR);
    });
  }

  async start() {
    this.protocolVersion = this.negotiate();
    let socket = process.env.PLUGD_SOCKET || '';
    if (!socket && this.goPluginMode) socket = this.pickSocket();
    if (!socket.startsWith('/')) {
      throw new SetupError(`PLUGD_SOCKET must be an absolute socket path; got "${socket}"`);
    }
    const maxBytes = envInt('PLUGD_MAX_MESSAGE_BYTES', 64 * 1024 * 1024);
    this.graceMs = envInt('PLUGD_SHUTDOWN_GRACE_MS', 5000);
    for (const hook of this.startHooks) {
      try {
        await hook();
      } catch (e) {
        throw new SetupError((e && e.message) || String(e));
      }
    }

    const protos = loadProto('plugd/v1/plugin.proto', 'grpc/health/v1/health.proto');
    const server = new grpc.Server({
      'grpc.max_receive_message_length': maxBytes,
      'grpc.max_send_message_length': maxBytes,
    });
    this.server = server;
    const names = ['grpc.health.v1.Health', 'plugd.v1.Control'];
    server.addService(protos.grpc.health.v1.Health.service, this.healthImpl());
    server.addService(protos.plugd.v1.Control.service, this.controlImpl());
    if (this.registry.functions.size > 0) {
      names.push('plugd.v1.Functions');
      server.addService(protos.plugd.v1.Functions.service, this.functionsImpl());
    }
    if (this.goPluginMode) {
      const go = loadProto('goplugin/grpc_controller.proto', 'goplugin/grpc_broker.proto');
      server.addService(go.plugin.GRPCController.service, this.goPluginControllerImpl());
      server.addService(go.plugin.GRPCBroker.service, this.goPluginBrokerImpl());
    }
    for (const { definition, implementation } of this.userServices) {
      const first = Object.values(definition)[0];
      const service = first.path.split('/')[1];
      if (names.includes(service)) throw new SetupError(`service ${service} is served twice`);
      names.push(service);
      server.addService(definition, implementation);
    }
    this.services = names;
    this.healthNames = new Set(['', 'plugin', ...names]);

    for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => this.shutdown());
    try { fs.unlinkSync(socket); } catch (e) { /* no stale socket */ }
    await new Promise((resolve, reject) => {
      server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
        if (err) reject(new SetupError(`cannot listen on unix:${socket}: ${err.message}`));
        else resolve();
      });
    });
    this.socket = socket;
    // Listening: announce it (synchronously, so it is out before anything else).
    fs.writeSync(1, `${CORE_PROTOCOL_VERSION}|${this.protocolVersion}|unix|${socket}|grpc\n`);
    log.info(`${this.name} ${this.version} serving on ${socket}`
      + `${this.goPluginMode ? ' (go-plugin mode)' : ''}`);
    if (this.shutdownRequested) this.shutdown();
  }

  // Starts a graceful shutdown: NOT_SERVING, Watch streams end, the
  // onShutdown hooks run, in-flight calls get PLUGD_SHUTDOWN_GRACE_MS, exit 0.
  // Idempotent.
  shutdown() {
    if (!this.server) { this.shutdownRequested = true; return; }
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.notifyWatchers();
    for (const call of this.brokerStreams) call.end();
    this.brokerStreams.clear();
    for (const hook of this.shutdownHooks) {
      try { hook(); } catch (e) { log.error(`an onShutdown hook failed: ${e && e.message}`); }
    }
    const finish = () => {
      try { fs.unlinkSync(this.socket); } catch (e) { /* gone already */ }
      log.info(`${this.name} stopped`);
      process.exit(EXIT_OK);
    };
    const timer = setTimeout(() => { this.server.forceShutdown(); finish(); }, this.graceMs);
    this.server.tryShutdown(() => { clearTimeout(timer); finish(); });
  }

  healthImpl() {
    return {
      check: (call, callback) => {
        const status = this.healthOf(call.request.service);
        if (status === SERVICE_UNKNOWN) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
        } else {
          callback(null, { status });
        }
      },
      watch: (call) => {
        let last = null;
        const update = () => {
          const status = this.healthOf(call.request.service);
          if (status !== last) {
            last = status;
            call.write({ status });
          }
          if (this.shuttingDown) {
            this.watchers.delete(update);
            call.end();
          }
        };
        this.watchers.add(update);
        call.on('cancelled', () => this.watchers.delete(update));
        update();
      },
    };
  }

  controlImpl() {
    return {
      describe: (call, callback) => callback(null, {
        name: this.name,
        version: this.version,
        protocolVersion: this.protocolVersion,
        coreProtocolVersion: CORE_PROTOCOL_VERSION,
        services: this.services,
        functions: this.registry.infos(),
        pid: process.pid,
      }),
      shutdown: (call, callback) => {
        const reason = call.request.reason;
        log.info(`shutdown requested${reason ? ` (${reason})` : ''}`);
        callback(null, {});
        setImmediate(() => this.shutdown());
      },
    };
  }

  // go-plugin's plugin.GRPCController: a go-plugin host's client.Kill()
  // calls Shutdown and gives the plugin 2 s to exit before killing it.
  goPluginControllerImpl() {
    return {
      shutdown: (call, callback) => {
        log.info('shutdown requested (plugin.GRPCController/Shutdown)');
        callback(null, {});
        setImmediate(() => this.shutdown());
      },
    };
  }

  // go-plugin's plugin.GRPCBroker: the stream a go-plugin host opens on every
  // connection is accepted and kept; what it sends is ignored (no brokered
  // connections); it ends when the host closes it or at shutdown.
  goPluginBrokerImpl() {
    return {
      startStream: (call) => {
        if (this.shuttingDown) { call.end(); return; }
        this.brokerStreams.add(call);
        call.on('data', (info) => log.debug(`go-plugin broker: ignoring the host's brokered `
          + `connection ${info.serviceId} (${info.network} ${info.address})`));
        const done = () => {
          if (this.brokerStreams.delete(call)) call.end();
        };
        call.on('end', done);
        call.on('cancelled', () => this.brokerStreams.delete(call));
        call.on('error', () => this.brokerStreams.delete(call));
      },
    };
  }

  functionsImpl() {
    return {
      listFunctions: (call, callback) => callback(null, { functions: this.registry.infos() }),
      call: (call, callback) => {
        this.registry.call(call.request.function, call.request.args || [])
          .then((result) => callback(null, { result }))
          .catch((e) => callback({
            code: e instanceof CallError ? e.code : grpc.status.INTERNAL,
            details: e.message,
          }));
      },
    };
  }
}

module.exports = {
  Plugin, CallError, Kind, Registry, loadProto, log, grpc,
  fromValue, toValue, MAGIC_COOKIE, EXIT_OK, EXIT_ERROR,
};
