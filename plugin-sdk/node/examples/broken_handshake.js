#!/usr/bin/env node
'use strict';
// A broken plugin for tests: prints a banner where the handshake belongs.
process.stdout.write('hello from a node plugin\n');
setInterval(() => {}, 1 << 30); // wait; the host kills it
