import type { CosConfig } from './types.js';

export const REDACTED = '***';

/**
 * A plain copy of the configuration that is safe to log: every password, secret and token is
 * replaced by `***`, and so is the password part of any URL (`https://user:secret@host`), any
 * PEM block and any bytes. Settings naming a file (`...File`, `...Files`) are paths, shown as
 * they are: the files' contents (certificates, keys, tokens) are never in the configuration.
 */
export function redactConfig(config: CosConfig): unknown {
  return redact(config);
}

function redact(value: unknown, key?: string): unknown {
  if (ArrayBuffer.isView(value)) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redact(item, key));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([name, child]) => [name, redact(child, name)]));
  }
  if (typeof value === 'string') {
    if (key !== undefined && SECRET_KEY.test(key) && !PATH_KEY.test(key)) return REDACTED;
    if (value.includes('-----BEGIN')) return REDACTED;
    return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, `$1:${REDACTED}@`);
  }
  return value;
}

const SECRET_KEY = /password|secret|token|credential|passphrase/i;
const PATH_KEY = /(File|Files|Path|Dir)$/;
