import { resolve } from 'node:path';
import { invalidMessage, showValue, type EnvReader } from './env-reader.js';
import { readYamlDocuments, yamlMapping } from './yaml-mapping.js';
import type { ClientTlsConfig, FailurePolicy, HandlerProtocol, ReadSideConfig } from './types.js';
import { READ_SIDE_ENV_PREFIX } from './variables.js';
import {
  boolean,
  failurePolicy,
  handlerProtocol,
  host,
  millisecondsOrDuration,
  parseValue,
  port,
  readSideId,
  text,
  type Codec,
} from './values.js';

/** The id of the read side given by READ_SIDE_HANDLER_SERVICE_HOST/_PORT. */
export const DEFAULT_READ_SIDE_ID = 'default';

/**
 * Retry, then stop: a failing read side never loses an event silently. Skipping must be chosen
 * explicitly, because a skipped event is gone from that read model for good.
 */
export const DEFAULT_FAILURE_POLICY: FailurePolicy = 'REPLAY_STOP';

type Settings = {
  host: string;
  port: number;
  protocol: HandlerProtocol;
  useTls: boolean;
  tlsCaFile: string;
  tlsCertFile: string;
  tlsKeyFile: string;
  tlsServerName: string;
  timeoutMs: number;
  autoStart: boolean;
  enabled: boolean;
  failurePolicy: FailurePolicy;
};

interface Setting<K extends keyof Settings = keyof Settings> {
  readonly field: K;
  /** key in a YAML document */
  readonly yaml: string;
  /** SETTING in COS_READ_SIDE_CONFIG__<SETTING>__<ID> */
  readonly env: string;
  readonly codec: Codec<Settings[K]>;
}

const SETTINGS: readonly Setting[] = [
  { field: 'host', yaml: 'host', env: 'HOST', codec: host },
  { field: 'port', yaml: 'port', env: 'PORT', codec: port },
  { field: 'protocol', yaml: 'protocol', env: 'PROTOCOL', codec: handlerProtocol },
  { field: 'useTls', yaml: 'useTls', env: 'USE_TLS', codec: boolean },
  { field: 'tlsCaFile', yaml: 'tlsCaFile', env: 'TLS_CA_FILE', codec: text },
  { field: 'tlsCertFile', yaml: 'tlsCertFile', env: 'TLS_CERT_FILE', codec: text },
  { field: 'tlsKeyFile', yaml: 'tlsKeyFile', env: 'TLS_KEY_FILE', codec: text },
  { field: 'tlsServerName', yaml: 'tlsServerName', env: 'TLS_SERVER_NAME', codec: host },
  { field: 'timeoutMs', yaml: 'timeout', env: 'TIMEOUT', codec: millisecondsOrDuration },
  { field: 'autoStart', yaml: 'autoStart', env: 'AUTO_START', codec: boolean },
  { field: 'enabled', yaml: 'enabled', env: 'ENABLED', codec: boolean },
  { field: 'failurePolicy', yaml: 'failurePolicy', env: 'FAILURE_POLICY', codec: failurePolicy },
] as Setting[];

const YAML_KEYS = ['readSideId', ...SETTINGS.map((setting) => setting.yaml)];

/** A read side as one source describes it, before defaults. */
interface Draft {
  readonly readSideId: string;
  /** where it was defined, for messages */
  readonly source: string;
  readonly values: Partial<Settings>;
  /** a value was given but invalid (already reported) */
  invalid: boolean;
  /** how to name a missing host or port in a message */
  readonly missing: (field: 'host' | 'port') => string;
  /** how a message names this read side, and one of its settings (a YAML key or a variable) */
  readonly subject: string;
  readonly settingName: (setting: Setting) => string;
}

export interface ReadSidesOptions {
  readonly reader: EnvReader;
  readonly cwd: string;
  readonly defaultTimeoutMs: number;
  /** COS_TLS_RELOAD_INTERVAL in ms */
  readonly tlsReloadIntervalMs: number;
}

/**
 * Gathers read sides from their three sources: READ_SIDE_HANDLER_SERVICE_* (id "default"),
 * the COS_READ_SIDE_CONFIG YAML file(s), and COS_READ_SIDE_CONFIG__<SETTING>__<ID> variables.
 * An id defined by two sources is a problem, not a merge: which one wins would be a guess.
 */
export function readReadSides(options: ReadSidesOptions): ReadSideConfig[] {
  const { reader } = options;
  const drafts = [...fromHandlerVariables(reader), ...fromYaml(options), ...fromSettingVariables(reader)];

  const seen = new Map<string, Draft>();
  const result: ReadSideConfig[] = [];
  for (const draft of drafts) {
    const earlier = seen.get(draft.readSideId);
    if (earlier !== undefined) {
      reader.report.problem(
        `read side ${JSON.stringify(draft.readSideId)} is defined twice: by ${earlier.source} and by ${draft.source}; expected unique read side ids`,
      );
      continue;
    }
    seen.set(draft.readSideId, draft);
    const config = complete(draft, options);
    if (config !== undefined) result.push(config);
  }
  return result;
}

function complete(draft: Draft, options: ReadSidesOptions): ReadSideConfig | undefined {
  const { values } = draft;
  if (values.host === undefined && !draft.invalid) options.reader.report.problem(draft.missing('host'));
  if (values.port === undefined && !draft.invalid) options.reader.report.problem(draft.missing('port'));
  const tls = completeTls(draft, options);
  if (draft.invalid || values.host === undefined || values.port === undefined || tls === null) return undefined;
  return {
    readSideId: draft.readSideId,
    host: values.host,
    port: values.port,
    protocol: values.protocol ?? 'grpc',
    useTls: values.useTls ?? false,
    tls,
    timeoutMs: values.timeoutMs ?? options.defaultTimeoutMs,
    autoStart: values.autoStart ?? true,
    enabled: values.enabled ?? true,
    failurePolicy: values.failurePolicy ?? DEFAULT_FAILURE_POLICY,
  };
}

const TLS_SETTINGS = SETTINGS.filter((setting) => setting.field.startsWith('tls'));
const settingOf = (field: keyof Settings) => SETTINGS.find((setting) => setting.field === field)!;

/**
 * A read side's TLS (client-tls): undefined without useTls, where a TLS setting is a mistake;
 * null when the settings do not go together (reported).
 */
function completeTls(draft: Draft, options: ReadSidesOptions): ClientTlsConfig | undefined | null {
  const { values } = draft;
  const { report } = options.reader;
  const where = draft.subject;
  const given = TLS_SETTINGS.filter((setting) => values[setting.field] !== undefined);
  if (values.useTls !== true) {
    for (const setting of given) {
      report.problem(
        `${where}: ${draft.settingName(setting)} is set but ${draft.settingName(settingOf('useTls'))} is not true: expected it true to use TLS, or ${draft.settingName(setting)} unset`,
      );
    }
    return given.length > 0 ? null : undefined;
  }
  if ((values.tlsCertFile === undefined) !== (values.tlsKeyFile === undefined)) {
    const [set, unset] = values.tlsCertFile !== undefined ? ['tlsCertFile', 'tlsKeyFile'] : ['tlsKeyFile', 'tlsCertFile'];
    report.problem(
      `${where}: ${draft.settingName(settingOf(set as keyof Settings))} is set without ${draft.settingName(settingOf(unset as keyof Settings))}: expected both (a client certificate and its key) or neither`,
    );
    return null;
  }
  const path = (value: string | undefined) => (value === undefined ? undefined : resolve(options.cwd, value));
  return {
    caFile: path(values.tlsCaFile),
    certFile: path(values.tlsCertFile),
    keyFile: path(values.tlsKeyFile),
    serverName: values.tlsServerName,
    reloadIntervalMs: options.tlsReloadIntervalMs,
  };
}

function fromHandlerVariables(reader: EnvReader): Draft[] {
  const hostName = 'READ_SIDE_HANDLER_SERVICE_HOST';
  const portName = 'READ_SIDE_HANDLER_SERVICE_PORT';
  if (!reader.isSet(hostName) && !reader.isSet(portName)) return [];
  const draft: Draft = {
    readSideId: DEFAULT_READ_SIDE_ID,
    source: `${hostName}/${portName}`,
    values: {},
    invalid: false,
    missing: (field) =>
      field === 'host'
        ? `${hostName} is unset: expected ${host.expected}, because ${portName} is set`
        : `${portName} is unset: expected ${port.expected}, because ${hostName} is set`,
    subject: `read side ${JSON.stringify(DEFAULT_READ_SIDE_ID)}`,
    settingName: (setting) => setting.yaml,
  };
  const hostFound = reader.lookup(hostName);
  const portFound = reader.lookup(portName);
  if (hostFound !== undefined) {
    const value = reader.parse(host, hostFound);
    if (value === undefined) draft.invalid = true;
    else draft.values.host = value;
  }
  if (portFound !== undefined) {
    const value = reader.parse(port, portFound);
    if (value === undefined) draft.invalid = true;
    else draft.values.port = value;
  }
  return [draft];
}

function fromSettingVariables(reader: EnvReader): Draft[] {
  const drafts = new Map<string, Draft>();
  const names = reader
    .names()
    .filter((name) => name.startsWith(READ_SIDE_ENV_PREFIX))
    .sort();
  const pattern = `${READ_SIDE_ENV_PREFIX}<SETTING>__<READSIDE_ID>`;
  for (const name of names) {
    const rest = name.slice(READ_SIDE_ENV_PREFIX.length);
    const separator = rest.indexOf('__');
    if (separator <= 0 || separator + 2 >= rest.length) {
      reader.report.problem(`${name} is not a read side setting: expected ${pattern}`);
      continue;
    }
    const settingName = rest.slice(0, separator).toUpperCase();
    const id = rest.slice(separator + 2);
    const setting = SETTINGS.find((candidate) => candidate.env === settingName);
    if (setting === undefined) {
      reader.report.problem(
        `${name}: unknown read side setting ${JSON.stringify(rest.slice(0, separator))}: expected one of ${SETTINGS.map((s) => s.env).join(', ')}`,
      );
      continue;
    }
    const idCheck = parseValue(readSideId, id);
    if (!idCheck.ok) {
      reader.report.problem(`${name}: read side id ${JSON.stringify(id)}: expected ${readSideId.expected}`);
      continue;
    }
    let draft = drafts.get(id);
    if (draft === undefined) {
      draft = {
        readSideId: id,
        source: `${READ_SIDE_ENV_PREFIX}*__${id}`,
        values: {},
        invalid: false,
        missing: (field) =>
          `read side ${JSON.stringify(id)} has no ${field}: expected ${READ_SIDE_ENV_PREFIX}${field.toUpperCase()}__${id} to be set`,
        subject: `read side ${JSON.stringify(id)}`,
        settingName: (named) => `${READ_SIDE_ENV_PREFIX}${named.env}__${id}`,
      };
      drafts.set(id, draft);
    }
    const value = reader.parse(setting.codec, { name, value: reader.raw(name)! });
    if (value === undefined) draft.invalid = true;
    else (draft.values as Record<string, unknown>)[setting.field] = value;
  }
  return [...drafts.values()];
}

function fromYaml(options: ReadSidesOptions): Draft[] {
  const drafts: Draft[] = [];
  for (const { content, where } of readYamlDocuments(options.reader, 'COS_READ_SIDE_CONFIG', options.cwd, 'holds no read side')) {
    const draft = fromYamlDocument(content, where, options.reader);
    if (draft !== undefined) drafts.push(draft);
  }
  return drafts;
}

function fromYamlDocument(content: unknown, where: string, reader: EnvReader): Draft | undefined {
  const { report } = reader;
  const mapping = yamlMapping(content, where, YAML_KEYS, report);
  if (mapping === undefined) return undefined;
  const { record, scalar } = mapping;

  const idText = scalar('readSideId');
  if (idText === undefined) {
    if (record['readSideId'] === undefined || record['readSideId'] === null) {
      report.problem(`${where}: readSideId is missing: expected ${readSideId.expected}`);
    }
    return undefined;
  }
  const id = parseValue(readSideId, idText);
  if (!id.ok) {
    report.problem(invalidMessage(`${where}: readSideId`, showValue('readSideId', idText), readSideId.expected));
    return undefined;
  }

  const values: Partial<Settings> = {};
  for (const setting of SETTINGS) {
    const raw = scalar(setting.yaml);
    if (raw === undefined) continue;
    const parsed = parseValue(setting.codec, raw);
    if (parsed.ok) {
      (values as Record<string, unknown>)[setting.field] = parsed.value;
    } else {
      report.problem(
        invalidMessage(`${where}: ${setting.yaml}`, showValue(setting.yaml, raw), setting.codec.expected, parsed.details),
      );
      mapping.invalid = true;
    }
  }
  return {
    readSideId: id.value,
    source: where,
    values,
    invalid: mapping.invalid,
    missing: (field) =>
      `${where} (read side ${JSON.stringify(id.value)}): ${field} is missing: expected ${field === 'host' ? host.expected : port.expected}`,
    subject: `${where} (read side ${JSON.stringify(id.value)})`,
    settingName: (setting) => setting.yaml,
  };
}

