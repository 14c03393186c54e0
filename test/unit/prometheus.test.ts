/**
 * MetricsText (shared/prometheus.ts): HELP and TYPE once per metric with its samples grouped under it
 * whatever order they are added in, label values and HELP escaped as the text format 0.0.4 says,
 * counters must end in _total, bad names refused, infinities and booleans printed as the format wants.
 */
import { describe, expect, it } from 'vitest';
import { escapeLabelValue, formatValue, MetricsText } from '../../shared/prometheus.ts';

describe('MetricsText', () => {
  it('prints a summary without quantiles as one _sum and one _count sample under TYPE summary', () => {
    const m = new MetricsText();
    m.summary('edgelite_w_seconds', 'W.')(1.5, 3, { db: 'x' });
    expect(m.toString()).toBe(['# HELP edgelite_w_seconds W.', '# TYPE edgelite_w_seconds summary', 'edgelite_w_seconds_sum{db="x"} 1.5', 'edgelite_w_seconds_count{db="x"} 3', ''].join('\n'));
    expect(() => m.summary('edgelite_w_seconds', 'again')).toThrow(/declared twice/);
  });

  it('prints HELP and TYPE once per metric, samples grouped, in declaration order', () => {
    const m = new MetricsText();
    const a = m.gauge('edgelite_a', 'A per database.');
    const b = m.counter('edgelite_b_total', 'B per database.');
    for (const db of ['x', 'y']) {
      a(1, { db });
      b(2, { db });
    }
    m.gauge('edgelite_c', 'C.')(3);
    expect(m.toString()).toBe([
      '# HELP edgelite_a A per database.',
      '# TYPE edgelite_a gauge',
      'edgelite_a{db="x"} 1',
      'edgelite_a{db="y"} 1',
      '# HELP edgelite_b_total B per database.',
      '# TYPE edgelite_b_total counter',
      'edgelite_b_total{db="x"} 2',
      'edgelite_b_total{db="y"} 2',
      '# HELP edgelite_c C.',
      '# TYPE edgelite_c gauge',
      'edgelite_c 3',
      '',
    ].join('\n'));
  });

  it('escapes label values (backslash, quote, newline) and HELP text (backslash, newline)', () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect(escapeLabelValue('plain-name_1')).toBe('plain-name_1');
    const m = new MetricsText();
    m.gauge('g', 'one\\two\nthree "quoted"')(1, { db: 'we"ird\\\n', other: '' });
    expect(m.toString()).toBe('# HELP g one\\\\two\\nthree "quoted"\n# TYPE g gauge\ng{db="we\\"ird\\\\\\n",other=""} 1\n');
  });

  it('prints booleans as 1/0 and infinities and NaN as the format spells them', () => {
    expect([true, false, 0, 1.5, -2, Infinity, -Infinity, NaN].map(formatValue)).toEqual(['1', '0', '0', '1.5', '-2', '+Inf', '-Inf', 'NaN']);
  });

  it('refuses a counter not ending in _total, a metric declared twice, and invalid names', () => {
    const m = new MetricsText();
    expect(() => m.counter('edgelite_writes', 'x')).toThrow(/_total/);
    m.gauge('edgelite_g', 'x');
    expect(() => m.gauge('edgelite_g', 'x')).toThrow(/twice/);
    expect(() => m.gauge('1bad', 'x')).toThrow(/metric name/);
    expect(() => m.gauge('has-dash', 'x')).toThrow(/metric name/);
    const s = m.gauge('edgelite_h', 'x');
    expect(() => s(1, { 'bad-label': 'v' })).toThrow(/label name/);
    expect(() => s(1, { __reserved: 'v' })).toThrow(/label name/);
    expect(() => s(1, { db: 'ok' })).not.toThrow();
  });

  it('prints a declared metric without samples as HELP and TYPE only (valid: an empty family)', () => {
    const m = new MetricsText();
    m.gauge('edgelite_empty', 'Nothing yet.');
    expect(m.toString()).toBe('# HELP edgelite_empty Nothing yet.\n# TYPE edgelite_empty gauge\n');
  });
});
