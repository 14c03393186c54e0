/**
 * The Node side of the status page (README.md#status-page): uPlot's browser build and style sheet are
 * read from the installed `uplot` package once per process (no CDN, nothing fetched at run time), and
 * createStatusUi pairs them with a fresh LagSampler for one server, which stops it on close.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { EdgeliteError } from '../errors.ts';
import type { StatusUi, UiAssets } from '../ui/routes.ts';
import { LagSampler, type LagSamplerOptions } from '../ui/samples.ts';

let cached: UiAssets | null = null;

/** readUiAssets reads uPlot's files the first time it is called, and answers the same text after. */
export function readUiAssets(): UiAssets {
  if (cached) return cached;
  let dist: string;
  try {
    dist = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
  } catch (err) {
    throw new EdgeliteError('MISCONFIGURED', `the status page needs the uplot package installed: ${(err as Error).message}`, { cause: err });
  }
  const read = (file: string): string => {
    try {
      return readFileSync(join(dist, file), 'utf8');
    } catch (err) {
      throw new EdgeliteError('MISCONFIGURED', `the status page cannot read ${join(dist, file)}: ${(err as Error).message}`, { cause: err });
    }
  };
  cached = { uplotJs: read('uPlot.iife.min.js'), uplotCss: read('uPlot.min.css') };
  return cached;
}

/** createStatusUi is one server's status page: the shared assets and its own sampler (not started yet). */
export function createStatusUi(o: LagSamplerOptions = {}): StatusUi {
  return { sampler: new LagSampler(o), assets: readUiAssets() };
}
