/**
 * MetricsText writes the Prometheus text exposition format 0.0.4 for GET /metrics on the primary and
 * the replica, so both escape the same way and print each metric's HELP and TYPE exactly once: samples
 * are grouped under their metric whatever order they are added in (a loop over databases can feed
 * several metrics at once), and metrics print in the order they were declared.
 *
 * ```ts
 * const m = new MetricsText();
 * const txid = m.gauge('edgelite_txid', 'Newest captured txid per database.');
 * txid(42, { db: 'app' });
 * return new Response(m.toString(), { headers: { 'content-type': PROMETHEUS_CONTENT_TYPE } });
 * ```
 */
import { EdgeliteError } from './errors.ts';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricType = 'counter' | 'gauge' | 'summary';
export type Labels = Readonly<Record<string, string>>;
/** Sample adds one sample (a number; booleans are 1/0) with its labels. */
export type Sample = (value: number | boolean, labels?: Labels) => void;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface Family {
  type: MetricType;
  help: string;
  samples: string[];
}

export class MetricsText {
  readonly #families = new Map<string, Family>();

  /** counter declares a monotonically increasing metric; its name must end in `_total`. */
  counter(name: string, help: string): Sample {
    if (!name.endsWith('_total')) throw new EdgeliteError('INTERNAL', `metrics: counter "${name}" must end in _total`);
    return this.#declare(name, 'counter', help);
  }

  gauge(name: string, help: string): Sample {
    return this.#declare(name, 'gauge', help);
  }

  /** summary declares a summary without quantiles: one `_sum` and one `_count` sample (mean = sum / count). */
  summary(name: string, help: string): (sum: number, count: number, labels?: Labels) => void {
    this.#declare(name, 'summary', help);
    const family = this.#families.get(name)!;
    return (sum, count, labels) => {
      family.samples.push(`${name}_sum${formatLabels(labels)} ${formatValue(sum)}`, `${name}_count${formatLabels(labels)} ${formatValue(count)}`);
    };
  }

  toString(): string {
    const lines: string[] = [];
    for (const [name, f] of this.#families) {
      lines.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`, ...f.samples);
    }
    return `${lines.join('\n')}\n`;
  }

  #declare(name: string, type: MetricType, help: string): Sample {
    if (!METRIC_NAME.test(name)) throw new EdgeliteError('INTERNAL', `metrics: invalid metric name "${name}"`);
    if (this.#families.has(name)) throw new EdgeliteError('INTERNAL', `metrics: "${name}" declared twice`);
    const family: Family = { type, help, samples: [] };
    this.#families.set(name, family);
    return (value, labels) => {
      family.samples.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
    };
  }
}

/** escapeLabelValue escapes a label value as the text format requires: backslash, double quote, newline. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** escapeHelp escapes HELP text: backslash and newline (quotes stay as they are). */
function escapeHelp(help: string): string {
  return help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatLabels(labels: Labels | undefined): string {
  if (!labels) return '';
  const parts = Object.entries(labels).map(([k, v]) => {
    if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new EdgeliteError('INTERNAL', `metrics: invalid label name "${k}"`);
    return `${k}="${escapeLabelValue(v)}"`;
  });
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** formatValue prints a sample value: integers exactly, infinities as the format spells them. */
export function formatValue(value: number | boolean): string {
  if (typeof value === 'boolean') return value ? '1' : '0';
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}
