#!/usr/bin/env node
// Runs a TypeScript file through tsx's loader: `node bin/run-ts.mjs FILE.ts [ARGS...]` (what `npm run bench` uses).
import { register } from 'tsx/esm/api';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

register();
const [file, ...rest] = process.argv.slice(2);
if (!file) throw new Error('usage: node bin/run-ts.mjs FILE.ts [ARGS...]');
process.argv = [process.argv[0], resolve(file), ...rest];
await import(pathToFileURL(resolve(file)).href);
