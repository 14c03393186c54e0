/** wa-sqlite's WebAssembly module loaded in Node, for unit tests of the Worker replica's SQLite parts. */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import factory from 'wa-sqlite/dist/wa-sqlite.mjs';
import type { WasmModule } from '../../deploy/worker/src/sqlite.ts';

/** loadWaSqlite compiles wa-sqlite's .wasm from node_modules and instantiates its module (synchronous wasm, as in workerd). */
export async function loadWaSqlite(): Promise<WasmModule> {
  const require = createRequire(import.meta.url);
  const wasm = new WebAssembly.Module(fs.readFileSync(require.resolve('wa-sqlite/dist/wa-sqlite.wasm')));
  return (await factory({
    locateFile: (f: string) => f,
    instantiateWasm(imports: WebAssembly.Imports, done: (i: WebAssembly.Instance, m: WebAssembly.Module) => void) {
      const instance = new WebAssembly.Instance(wasm, imports);
      done(instance, wasm);
      return instance.exports;
    },
  })) as WasmModule;
}
