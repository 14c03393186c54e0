#!/usr/bin/env node
// The `edgelite` command. The sources are TypeScript run through tsx's loader (a runtime dependency),
// so the package needs no build step; see README "Dependencies".
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./cli.ts');
await main(process.argv.slice(2));
