import type { EnvReader } from './env-reader.js';

/** One YAML document of a read side or publisher: its keys, read as single values. */
export interface YamlMapping {
  readonly record: Record<string, unknown>;
  /** the key's value as text; a list or mapping is reported and marks the mapping invalid */
  scalar(key: string): string | undefined;
  /** a key or value was refused (already reported) */
  invalid: boolean;
}

/**
 * The document as a mapping of only `keys`: anything else (not a mapping: undefined; an
 * unknown key: invalid) is reported at `where`.
 */
export function yamlMapping(content: unknown, where: string, keys: readonly string[], report: EnvReader['report']): YamlMapping | undefined {
  if (typeof content !== 'object' || Array.isArray(content) || content === null) {
    report.problem(`${where}: expected a mapping with keys ${keys.join(', ')}`);
    return undefined;
  }
  const record = content as Record<string, unknown>;
  const mapping: YamlMapping = {
    record,
    invalid: false,
    scalar(key) {
      const value = record[key];
      if (value === undefined || value === null) return undefined;
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
      report.problem(`${where}: ${key} must be a single value, not a list or mapping`);
      mapping.invalid = true;
      return undefined;
    },
  };
  for (const key of Object.keys(record)) {
    if (!keys.includes(key)) {
      report.problem(`${where}: unknown key ${JSON.stringify(key)}: expected only ${keys.join(', ')}`);
      mapping.invalid = true;
    }
  }
  return mapping;
}
