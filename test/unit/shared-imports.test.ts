/**
 * shared/ is bundled into the Cloudflare Worker, so it may use Web APIs only; shared/node/ holds the
 * Node-only code common to primary and replica (the query process pool), which no Worker-safe file
 * imports. This test parses every
 * .ts file under shared/ with the TypeScript compiler (not regexes, so comments and strings that
 * mention `node:fs` or "process" do not count) and fails on any Node-only import or global.
 */
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SHARED_DIR = fileURLToPath(new URL('../../shared/', import.meta.url));

const FORBIDDEN_PACKAGES = ['better-sqlite3', 'undici', '@hono/node-server'];
const NODE_BUILTINS = new Set([
  ...builtinModules,
  'fs', 'path', 'crypto', 'zlib', 'os', 'child_process', 'worker_threads', 'stream', 'buffer', 'net', 'http',
  'https', 'http2', 'tls', 'dns', 'url', 'util', 'events', 'module', 'process', 'readline', 'v8', 'vm',
]);
const FORBIDDEN_GLOBALS = new Set(['Buffer', 'process', 'require', '__dirname', '__filename']);

/** forbiddenSpecifier says why a module specifier may not appear in shared/, or null if it may. */
function forbiddenSpecifier(spec: string): string | null {
  if (spec.startsWith('node:')) return 'a node: built-in';
  const first = spec.split('/')[0]!;
  if (NODE_BUILTINS.has(spec) || NODE_BUILTINS.has(first)) return 'a Node built-in';
  for (const pkg of FORBIDDEN_PACKAGES) {
    if (spec === pkg || spec.startsWith(`${pkg}/`)) return 'a Node-only package';
  }
  return null;
}

/** isMemberName is true when `node` names a property or member, not a variable reference. */
function isMemberName(node: ts.Identifier): boolean {
  const parent = node.parent;
  return (
    ((ts.isPropertyAccessExpression(parent) || ts.isQualifiedName(parent)) &&
      (ts.isPropertyAccessExpression(parent) ? parent.name : parent.right) === node) ||
    ((ts.isPropertyAssignment(parent) ||
      ts.isPropertySignature(parent) ||
      ts.isPropertyDeclaration(parent) ||
      ts.isMethodDeclaration(parent) ||
      ts.isMethodSignature(parent) ||
      ts.isGetAccessorDeclaration(parent) ||
      ts.isSetAccessorDeclaration(parent) ||
      ts.isEnumMember(parent)) &&
      parent.name === node)
  );
}

/** findViolations lists every Node-only import, require or global in one TypeScript source. */
function findViolations(source: string, fileName = 'sample.ts'): string[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const where = (node: ts.Node) => {
    const { line } = file.getLineAndCharacterOfPosition(node.getStart(file));
    return `${fileName}:${line + 1}`;
  };
  const checkSpecifier = (node: ts.Node, spec: ts.Expression | undefined, how: string) => {
    if (spec === undefined) return;
    if (!ts.isStringLiteralLike(spec)) {
      found.push(`${where(node)}: ${how} with a computed specifier`);
      return;
    }
    const why = forbiddenSpecifier(spec.text);
    if (why) found.push(`${where(node)}: ${how} "${spec.text}" (${why})`);
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      checkSpecifier(node, node.moduleSpecifier, ts.isImportDeclaration(node) ? 'import' : 'export from');
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      checkSpecifier(node, node.moduleReference.expression, 'import = require');
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      checkSpecifier(node, node.arguments[0], 'dynamic import');
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      checkSpecifier(node, node.argument.literal as ts.Expression, 'import type');
    } else if (ts.isIdentifier(node) && FORBIDDEN_GLOBALS.has(node.text) && !isMemberName(node)) {
      found.push(`${where(node)}: uses the Node global ${node.text}`);
    } else if (
      ts.isElementAccessExpression(node) &&
      ts.isStringLiteralLike(node.argumentExpression) &&
      FORBIDDEN_GLOBALS.has(node.argumentExpression.text)
    ) {
      found.push(`${where(node)}: uses the Node global ${node.argumentExpression.text}`);
    } else if (
      ts.isPropertyAccessExpression(node) &&
      FORBIDDEN_GLOBALS.has(node.name.text) &&
      ts.isIdentifier(node.expression) &&
      ['globalThis', 'global', 'self', 'window'].includes(node.expression.text)
    ) {
      found.push(`${where(node)}: uses the Node global ${node.name.text}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return found;
}

const NODE_ONLY_DIR = path.join(SHARED_DIR, 'node');

function listTsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' || full === NODE_ONLY_DIR ? [] : listTsFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

describe('shared/ stays Worker-safe', () => {
  it('has no Node-only import or global in any shared/ file', () => {
    const files = listTsFiles(SHARED_DIR);
    expect(files.map((f) => path.basename(f))).toContain('types.ts');
    const violations = files.flatMap((f) => findViolations(fs.readFileSync(f, 'utf8'), path.relative(SHARED_DIR, f)));
    expect(violations).toEqual([]);
  });

  it('no Worker-safe shared/ file imports shared/node/', () => {
    const found = listTsFiles(SHARED_DIR).flatMap((f) => {
      const text = fs.readFileSync(f, 'utf8');
      return [...text.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.[^'"]*)['"]/g)]
        .filter((m) => path.resolve(path.dirname(f), m[1]!).startsWith(NODE_ONLY_DIR + path.sep))
        .map((m) => `${path.relative(SHARED_DIR, f)}: ${m[1]}`);
    });
    expect(found).toEqual([]);
  });
});

describe('findViolations', () => {
  const bad: [string, string][] = [
    ['default import of fs', `import x from "fs";`],
    ['node: import', `import { readFileSync } from 'node:fs';`],
    ['namespace import', `import * as p from 'path';`],
    ['subpath builtin', `import { readFile } from 'fs/promises';`],
    ['side-effect import', `import 'node:crypto';`],
    ['type-only import of a builtin', `import type { Readable } from 'stream';`],
    ['multi-line import', `import {\n  a,\n  b,\n} from 'zlib';`],
    ['re-export', `export { createHash } from 'crypto';`],
    ['export star', `export * from 'os';`],
    ['dynamic import', `const fs = await import('node:fs');`],
    ['dynamic import of a bare builtin', `const m = await import("child_process");`],
    ['dynamic import, computed', `const m = await import(name);`],
    ['require', `const fs = require('fs');`],
    ['require of a package', `const db = require('better-sqlite3');`],
    ['import = require', `import fs = require('fs');`],
    ['better-sqlite3', `import Database from 'better-sqlite3';`],
    ['undici', `import { request } from 'undici';`],
    ['undici subpath', `import { x } from 'undici/lib/core';`],
    ['hono node server', `import { serve } from '@hono/node-server';`],
    ['worker_threads', `import { Worker } from 'worker_threads';`],
    ['buffer module', `import { Buffer as B } from 'buffer';`],
    ['global Buffer', `const b = Buffer.from('x');`],
    ['Buffer as a type', `function f(b: Buffer): void {}`],
    ['global process', `const e = process.env.X;`],
    ['typeof process guard', `if (typeof process !== 'undefined') {}`],
    ['globalThis.process', `const p = globalThis.process;`],
    ["globalThis['Buffer']", `const B = globalThis['Buffer'];`],
    ['import type()', `type R = import('node:stream').Readable;`],
    ['template literal specifier', 'const m = await import(`node:fs`);'],
  ];
  for (const [name, source] of bad) {
    it(`catches ${name}`, () => {
      expect(findViolations(source)).not.toEqual([]);
    });
  }

  const ok: [string, string][] = [
    ['relative imports', `import { EdgeliteError } from './errors.ts';\nimport type { Token } from './token.ts';`],
    ['msgpackr', `import { Packr } from 'msgpackr';`],
    ['hono', `import { Hono } from 'hono';`],
    ['comments and strings', `// import fs from 'node:fs'\n/** uses process and Buffer */\nconst s = "require('fs') and process";`],
    ['members named like globals', `const o = { process: 1, Buffer: 2 };\no.process = 3;\ninterface I { process: number }\nclass C { Buffer() {} }`],
    ['a package whose name starts like a builtin', `import x from 'fs-extra-web';\nimport y from 'pathe';`],
  ];
  for (const [name, source] of ok) {
    it(`allows ${name}`, () => {
      expect(findViolations(source)).toEqual([]);
    });
  }

  it('reports the file and line', () => {
    expect(findViolations(`const a = 1;\nimport x from 'fs';`, 'x.ts')).toEqual(['x.ts:2: import "fs" (a Node built-in)']);
  });
});
