/**
 * The project explains itself: code cites only the repo's own docs (docs/*.md, README.md), and every
 * cited section exists, so a reader of the public repository can follow each citation
 * (docs/ARCHITECTURE.md#the-folder-map).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../kit/spawn.ts';

const CODE_DIRS = ['primary', 'replica', 'shared', 'deploy', 'bin', 'scripts', 'test'];
const CODE_FILE = /\.(ts|mjs|js|toml)$/;

function codeFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...codeFiles(path));
    else if (CODE_FILE.test(name)) out.push(path);
  }
  return out;
}

/** slug turns a Markdown heading into its GitHub anchor. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} -]/gu, '').replace(/ /g, '-');
}

function anchorsOf(doc: string): Set<string> {
  const text = readFileSync(join(REPO_ROOT, doc), 'utf8');
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!)));
}

const files = CODE_DIRS.flatMap((d) => codeFiles(join(REPO_ROOT, d)));
const self = relative(REPO_ROOT, new URL(import.meta.url).pathname);

describe('code citations', () => {
  it('name no design notes outside the repository', () => {
    const outside = files
      .filter((f) => relative(REPO_ROOT, f) !== self)
      .filter((f) => /DESIGN(\.md)? §|DESIGN\.md|STYLE\.md/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(REPO_ROOT, f));
    expect(outside).toEqual([]);
  });

  it('point at docs and sections that exist', () => {
    const anchors = new Map<string, Set<string>>();
    const broken: string[] = [];
    let cited = 0;
    for (const f of files) {
      for (const m of readFileSync(f, 'utf8').matchAll(/\b((?:docs\/[A-Z]+|README)\.md)(?:#([a-z0-9-]+))?/g)) {
        const [, doc, anchor] = m;
        cited++;
        let known = anchors.get(doc!);
        if (!known) {
          try {
            known = anchorsOf(doc!);
          } catch {
            broken.push(`${relative(REPO_ROOT, f)}: ${doc} does not exist`);
            continue;
          }
          anchors.set(doc!, known);
        }
        if (anchor && !known.has(anchor)) broken.push(`${relative(REPO_ROOT, f)}: ${doc}#${anchor} names no section`);
      }
    }
    expect(broken).toEqual([]);
    expect(cited).toBeGreaterThan(30);
  });
});
