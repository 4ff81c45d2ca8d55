import type { CosConfig } from './types.js';

export const REDACTED = '***';

/**
 * A plain copy of the configuration that is safe to log: every `password` is replaced by
 * `***`, and so is the password part of any URL (`https://user:secret@host`).
 */
export function redactConfig(config: CosConfig): unknown {
  return redact(config);
}

function redact(value: unknown, key?: string): unknown {
  if (Array.isArray(value)) return value.map((item) => redact(item));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([name, child]) => [name, redact(child, name)]));
  }
  if (typeof value === 'string') {
    if (key !== undefined && /password|secret|token/i.test(key)) return REDACTED;
    return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, `$1:${REDACTED}@`);
  }
  return value;
}
