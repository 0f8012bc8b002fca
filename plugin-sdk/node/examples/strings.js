#!/usr/bin/env node
'use strict';
// strings: upper, reverse and wordcount, a plugd functions plugin in Node.js.
//
//   calc --plugin plugin-sdk/node/examples/strings.js upper hello    # HELLO
const { Plugin } = require('..');

const plugin = new Plugin({ name: 'strings', version: '1.0.0' });

plugin.function('upper', {
  help: 'upper S: S in upper case',
  params: [{ name: 's', kind: 'string', help: 'the text' }],
}, (s) => s.toUpperCase());

plugin.function('reverse', {
  help: 'reverse S: S backwards (by code point)',
  params: [{ name: 's', kind: 'string', help: 'the text' }],
}, (s) => [...s].reverse().join(''));

plugin.function('wordcount', {
  help: 'wordcount S...: the number of whitespace-separated words in the strings',
  params: [{ name: 's', kind: 'string', variadic: true, atLeastOne: true }],
}, (...texts) => texts.reduce((n, t) => n + t.split(/\s+/).filter(Boolean).length, 0));

plugin.serve();
