#!/usr/bin/env node
'use strict';
// kv: the kv.v1.KV service (proto/examples/kv/v1/kv.proto) in Node.js.
//
// The data file is --data FILE (or --data=FILE), else $KV_DATA_FILE, else
// kv-data.pb in the working directory, in plugd-kv's (C++) format, so the
// implementations read each other's files: the line "plugd-kv 1", then
// kv.v1.Entry messages, each preceded by its varint length. Every Put and
// Delete rewrites the file atomically (temp file, fsync, rename) before
// answering.
const fs = require('fs');
const path = require('path');
const { Plugin, loadProto, grpc, log } = require('..');

const MAGIC = Buffer.from('plugd-kv 1\n');

function dataPath(argv) {
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--data' && i + 1 < argv.length) return argv[i + 1];
    if (argv[i].startsWith('--data=')) return argv[i].slice('--data='.length);
  }
  return process.env.KV_DATA_FILE || 'kv-data.pb';
}

// kv.v1.Entry by hand: field 1 (key, string) and 2 (value, bytes).
function varint(n) {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

function readVarint(buf, pos) {
  let result = 0;
  let mul = 1;
  for (;;) {
    if (pos >= buf.length || mul > 2 ** 49) throw new Error('truncated varint');
    const byte = buf[pos];
    pos += 1;
    result += (byte & 0x7f) * mul;
    if (!(byte & 0x80)) return [result, pos];
    mul *= 128;
  }
}

function encodeEntry(key, value) {
  const k = Buffer.from(key, 'utf8');
  return Buffer.concat([Buffer.from([0x0a]), varint(k.length), k,
    Buffer.from([0x12]), varint(value.length), value]);
}

function decodeEntry(buf) {
  let key = '';
  let value = Buffer.alloc(0);
  let pos = 0;
  while (pos < buf.length) {
    let tag;
    [tag, pos] = readVarint(buf, pos);
    if ((tag & 7) !== 2) throw new Error('unexpected wire type');
    let len;
    [len, pos] = readVarint(buf, pos);
    if (pos + len > buf.length) throw new Error('truncated field');
    const field = buf.subarray(pos, pos + len);
    pos += len;
    if (tag >> 3 === 1) key = field.toString('utf8');
    else if (tag >> 3 === 2) value = Buffer.from(field);
  }
  return [key, value];
}

class Store {
  constructor(file) {
    this.file = file;
    this.data = new Map();
  }

  load() {
    let contents;
    try {
      contents = fs.readFileSync(this.file);
    } catch (e) {
      if (e.code === 'ENOENT') return;
      throw e;
    }
    if (contents.length === 0) return;
    const corrupt = (why) => new Error(`the data file ${this.file} is corrupt (${why}); `
      + 'move it away to start with an empty store');
    if (!contents.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw corrupt('it does not start with "plugd-kv 1"');
    }
    const data = new Map();
    let pos = MAGIC.length;
    while (pos < contents.length) {
      try {
        let size;
        [size, pos] = readVarint(contents, pos);
        if (pos + size > contents.length) throw new Error('truncated entry');
        const [key, value] = decodeEntry(contents.subarray(pos, pos + size));
        pos += size;
        data.set(key, value);
      } catch (e) {
        throw corrupt(`entry ${data.size + 1} is unreadable`);
      }
    }
    this.data = data;
    log.info(`loaded ${data.size} keys from ${this.file}`);
  }

  save() {
    const parts = [MAGIC];
    for (const key of [...this.data.keys()].sort()) {
      const entry = encodeEntry(key, this.data.get(key));
      parts.push(varint(entry.length), entry);
    }
    const temp = `${this.file}.tmp`;
    const fd = fs.openSync(temp, 'w', 0o600);
    try {
      fs.writeSync(fd, Buffer.concat(parts));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, this.file);
    const dir = fs.openSync(path.dirname(path.resolve(this.file)), 'r');
    try { fs.fsyncSync(dir); } finally { fs.closeSync(dir); }
  }

  matching(prefix) {
    return [...this.data.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
}

// The go-plugin cookie accepted (go-plugin mode, docs/go-plugin.md): the KV
// example application's, as plugd-kv (C++) accepts, or --go-plugin-cookie
// KEY=VALUE.
function goPluginCookie(argv) {
  let text = 'KV_PLUGIN=plugd-kv-example-1';
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--go-plugin-cookie' && i + 1 < argv.length) text = argv[i + 1];
    if (argv[i].startsWith('--go-plugin-cookie=')) text = argv[i].slice('--go-plugin-cookie='.length);
  }
  const eq = text.indexOf('=');
  if (eq <= 0 || eq === text.length - 1) {
    process.stderr.write(`plugd-node-kv: --go-plugin-cookie wants KEY=VALUE, got "${text}"\n`);
    process.exit(1);
  }
  return { magicCookieKey: text.slice(0, eq), magicCookieValue: text.slice(eq + 1) };
}

const store = new Store(dataPath(process.argv.slice(2)));
const plugin = new Plugin({
  name: 'kv', version: '1.0.0', goPlugin: goPluginCookie(process.argv.slice(2)),
});
const emptyKey = { code: grpc.status.INVALID_ARGUMENT, details: 'the key is empty' };

plugin.onStart(() => store.load());
plugin.addService(loadProto('kv/v1/kv.proto').kv.v1.KV.service, {
  get({ request }, callback) {
    if (!request.key) return callback(emptyKey);
    const value = store.data.get(request.key);
    if (value === undefined) {
      return callback({ code: grpc.status.NOT_FOUND, details: `no key "${request.key}"` });
    }
    return callback(null, { value });
  },
  put({ request }, callback) {
    if (!request.key) return callback(emptyKey);
    store.data.set(request.key, Buffer.from(request.value));
    store.save();
    return callback(null, {});
  },
  delete({ request }, callback) {
    if (!request.key) return callback(emptyKey);
    const existed = store.data.delete(request.key);
    if (existed) store.save();
    return callback(null, { existed });
  },
  list({ request }, callback) {
    callback(null, { keys: store.matching(request.prefix) });
  },
  scan(call) {
    for (const key of store.matching(call.request.prefix)) {
      if (plugin.shuttingDown) {
        call.destroy({ code: grpc.status.UNAVAILABLE, details: 'the plugin is shutting down' });
        return;
      }
      call.write({ key, value: store.data.get(key) });
    }
    call.end();
  },
});
plugin.serve();
