/**
 * The few workerd and wa-sqlite types this Worker uses, declared here so the Worker typechecks with the
 * project's own TypeScript and no extra type package (@cloudflare/workers-types is not a dependency).
 * Each declaration is the subset of the runtime API that the code calls, with the runtime's own names.
 */

declare module 'cloudflare:workers' {
  export abstract class DurableObject<Env = unknown> {
    protected ctx: DurableObjectState;
    protected env: Env;
    constructor(ctx: DurableObjectState, env: Env);
    fetch?(request: Request): Response | Promise<Response>;
    alarm?(): void | Promise<void>;
  }
}

interface SqlStorageCursor<T = Record<string, SqlStorageValue>> extends Iterable<T> {
  toArray(): T[];
  one(): T;
  next(): { done?: false; value: T } | { done: true; value?: never };
  readonly rowsRead: number;
  readonly rowsWritten: number;
}

type SqlStorageValue = ArrayBuffer | string | number | null;

interface SqlStorage {
  exec<T = Record<string, SqlStorageValue>>(query: string, ...bindings: unknown[]): SqlStorageCursor<T>;
  readonly databaseSize: number;
}

interface DurableObjectStorage {
  readonly sql: SqlStorage;
  transactionSync<T>(fn: () => T): T;
  getAlarm(): Promise<number | null>;
  setAlarm(scheduledTime: number | Date): Promise<void>;
  deleteAlarm(): Promise<void>;
}

interface DurableObjectState {
  readonly id: DurableObjectId;
  readonly storage: DurableObjectStorage;
  blockConcurrencyWhile<T>(fn: () => Promise<T>): Promise<T>;
  waitUntil(promise: Promise<unknown>): void;
}

interface DurableObjectId {
  toString(): string;
  readonly name?: string;
}

interface DurableObjectStub {
  fetch(request: Request): Promise<Response>;
}

interface DurableObjectNamespace {
  idFromName(name: string): DurableObjectId;
  get(id: DurableObjectId): DurableObjectStub;
}

interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}

interface ScheduledController {
  readonly scheduledTime: number;
  readonly cron: string;
}

declare module '*.wasm' {
  const module: WebAssembly.Module;
  export default module;
}

declare module 'wa-sqlite/dist/wa-sqlite.mjs' {
  /** The Emscripten module factory of wa-sqlite's synchronous build. */
  const factory: (options: Record<string, unknown>) => Promise<import('./sqlite.ts').WasmModule>;
  export default factory;
}
