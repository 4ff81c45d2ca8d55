import { parseYamlDocuments } from './kubernetes.js';

/** The parts of a compose service the checks read. */
export interface ComposeService {
  readonly image?: string;
  readonly build?: { readonly context: string; readonly dockerfile: string };
  readonly command?: readonly string[];
  readonly environment?: Readonly<Record<string, string | number | boolean | null>> | readonly string[];
  readonly ports?: readonly (string | { readonly target: number; readonly published?: number | string })[];
  readonly depends_on?: readonly string[] | Readonly<Record<string, { readonly condition?: string; readonly required?: boolean }>>;
  readonly healthcheck?: {
    readonly test: string | readonly string[];
    readonly interval?: string;
    readonly timeout?: string;
    readonly retries?: number;
    readonly start_period?: string;
    readonly disable?: boolean;
  };
  readonly profiles?: readonly string[];
  readonly volumes?: readonly (string | object)[];
  readonly [field: string]: unknown;
}

export interface ComposeFile {
  readonly name?: string;
  readonly services: Readonly<Record<string, ComposeService>>;
  readonly volumes?: Readonly<Record<string, unknown>>;
}

export function parseCompose(text: string): ComposeFile {
  const documents = parseYamlDocuments(text, 'compose');
  if (documents.length !== 1) throw new Error('a compose file is one YAML document');
  const file = documents[0] as ComposeFile;
  if (typeof file.services !== 'object' || file.services === null) throw new Error('no services');
  return file;
}

/** A service's environment as name -> raw value (before interpolation). */
export function serviceEnvironment(service: ComposeService): Map<string, string> {
  const env = new Map<string, string>();
  const source = service.environment;
  if (Array.isArray(source)) {
    for (const entry of source as readonly string[]) {
      const at = entry.indexOf('=');
      env.set(at < 0 ? entry : entry.slice(0, at), at < 0 ? '' : entry.slice(at + 1));
    }
  } else if (source) {
    for (const [name, value] of Object.entries(source)) env.set(name, value === null ? '' : String(value));
  }
  return env;
}

/**
 * Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
 * `${VAR:?message}`, `${VAR?message}` and `$$` for a literal `$`.
 */
export function interpolate(text: string, env: Readonly<Record<string, string | undefined>>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (match, braced?: string, colon?: string, operator?: string, operand?: string, bare?: string) => {
      if (match === '$$') return '$';
      const name = (braced ?? bare)!;
      const value = env[name];
      const missing = colon ? value === undefined || value === '' : value === undefined;
      if (!operator || !missing) return value ?? '';
      if (operator === '-') return operand ?? '';
      throw new Error(`${name}: ${operand || 'required'}`);
    },
  );
}

/** The container ports a service publishes (`"9000:9000"`, `"127.0.0.1:9000:9000/tcp"`, long form). */
export function publishedContainerPorts(service: ComposeService): number[] {
  return (service.ports ?? []).map((port) => {
    if (typeof port === 'object') return port.target;
    const container = port.replace(/\/(tcp|udp)$/, '').split(':').at(-1)!;
    return Number(container);
  });
}

/** The conditions a service waits for: dependency -> condition (service_started for the list form). */
export function dependencies(service: ComposeService): Map<string, { condition: string; required: boolean }> {
  const result = new Map<string, { condition: string; required: boolean }>();
  const source = service.depends_on;
  if (Array.isArray(source)) {
    for (const name of source as readonly string[]) result.set(name, { condition: 'service_started', required: true });
  } else if (source) {
    for (const [name, value] of Object.entries(source)) {
      result.set(name, { condition: value.condition ?? 'service_started', required: value.required ?? true });
    }
  }
  return result;
}
