#!/usr/bin/env node
'use strict';
// A broken plugin for tests: fails before its handshake with exit code 3.
const fs = require('fs');

fs.writeSync(2, '[ERROR] cannot open /nonexistent/config.yaml\n');
fs.writeSync(2, '[ERROR] node plugin giving up\n');
process.exit(3);
