#!/usr/bin/env node
'use strict';
// plugd-node-echo: the benchmark's echo.v1.Echo plugin in Node.js.
//
// Serves echo.v1.Echo (proto/examples/echo/v1/echo.proto) through the Node
// SDK, so that the benchmark (docs/benchmarks.md) can compare a Node plugin's
// call latency and cold start with the C++ one's (plugd-echo).
const path = require('path');
const { Plugin, loadProto } = require(path.resolve(__dirname, '../../plugin-sdk/node'));

const plugin = new Plugin({ name: 'node-echo', version: '1.0.0' });
plugin.addService(loadProto('echo/v1/echo.proto').echo.v1.Echo.service, {
  echo({ request }, callback) {
    callback(null, { payload: request.payload });
  },
});
plugin.serve();
