import { z } from 'zod';
import { invalidMessage, showValue, type EnvReader } from './env-reader.js';
import { readYamlDocuments, yamlMapping } from './yaml-mapping.js';
import { PUBLISHER_SINKS, type PublisherConfig, type PublisherSink } from './types.js';
import { PUBLISHER_ENV_PREFIX } from './variables.js';
import { boolean, milliseconds, parseValue, readSideId, type Codec } from './values.js';

const sinkKind: Codec<PublisherSink> = {
  schema: z.string().trim().toLowerCase().pipe(z.enum(PUBLISHER_SINKS)),
  expected: `one of ${PUBLISHER_SINKS.join(', ')}`,
};

const brokerUrl: Codec<string> = {
  schema: z
    .string()
    .trim()
    .refine((value) =>
      value.split(',').every((part) => {
        try {
          return /^(nats|tls|amqp|amqps):$/.test(new URL(part.trim()).protocol);
        } catch {
          return false;
        }
      }),
    ),
  expected: 'a broker URL: nats://host:port (several comma-separated allowed) or amqp(s)://user:password@host:port/vhost',
};

/** A NATS subject: dot-separated tokens, no wildcards or spaces. */
const subject: Codec<string> = {
  schema: z
    .string()
    .trim()
    .regex(/^[^\s.*>]+(\.[^\s.*>]+)*$/),
  expected: 'a NATS subject without wildcards, e.g. cos.events',
};

/** Exchanges and routing keys: at most 255 characters (AMQP short strings); '' is the default exchange. */
const amqpName: Codec<string> = { schema: z.string().trim().max(255), expected: 'at most 255 characters' };

const format: Codec<'protobuf' | 'json'> = {
  schema: z.string().trim().toLowerCase().pipe(z.enum(['protobuf', 'json'])),
  expected: 'protobuf (the serialized EventWrapper) or json (its proto3 JSON; Anys of the COS_PROTO_DESCRIPTOR_SET types as JSON)',
};

type Settings = {
  sink: PublisherSink;
  url: string;
  subject: string;
  exchange: string;
  routingKey: string;
  format: 'protobuf' | 'json';
  timeoutMs: number;
  autoStart: boolean;
  enabled: boolean;
};

interface Setting {
  readonly field: keyof Settings;
  readonly yaml: string;
  readonly env: string;
  readonly codec: Codec<unknown>;
}

const SETTINGS: readonly Setting[] = [
  { field: 'sink', yaml: 'sink', env: 'SINK', codec: sinkKind },
  { field: 'url', yaml: 'url', env: 'URL', codec: brokerUrl },
  { field: 'subject', yaml: 'subject', env: 'SUBJECT', codec: subject },
  { field: 'exchange', yaml: 'exchange', env: 'EXCHANGE', codec: amqpName },
  { field: 'routingKey', yaml: 'routingKey', env: 'ROUTING_KEY', codec: amqpName },
  { field: 'format', yaml: 'format', env: 'FORMAT', codec: format },
  { field: 'timeoutMs', yaml: 'timeout', env: 'TIMEOUT', codec: milliseconds },
  { field: 'autoStart', yaml: 'autoStart', env: 'AUTO_START', codec: boolean },
  { field: 'enabled', yaml: 'enabled', env: 'ENABLED', codec: boolean },
] as Setting[];

const YAML_KEYS = ['publisherId', ...SETTINGS.map((setting) => setting.yaml)];

/** Default wait for a broker acknowledgement before the publication is retried. */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 10_000;

interface Draft {
  readonly id: string;
  readonly source: string;
  readonly values: Partial<Settings>;
  invalid: boolean;
  /** how a message names one setting of this publisher */
  readonly settingName: (setting: Setting) => string;
}

export interface PublishersOptions {
  readonly reader: EnvReader;
  readonly cwd: string;
}

/**
 * Gathers publishers from the COS_PUBLISHER_CONFIG YAML file(s) and the
 * COS_PUBLISHER_CONFIG__<SETTING>__<ID> variables. An id defined by both is a problem.
 */
export function readPublishers(options: PublishersOptions): PublisherConfig[] {
  const { reader } = options;
  const drafts = [...fromYaml(options), ...fromSettingVariables(reader)];
  const seen = new Map<string, Draft>();
  const result: PublisherConfig[] = [];
  for (const draft of drafts) {
    const earlier = seen.get(draft.id);
    if (earlier !== undefined) {
      reader.report.problem(
        `publisher ${JSON.stringify(draft.id)} is defined twice: by ${earlier.source} and by ${draft.source}; expected unique publisher ids`,
      );
      continue;
    }
    seen.set(draft.id, draft);
    const config = complete(draft, reader);
    if (config !== undefined) result.push(config);
  }
  return result;
}

const byField = (field: keyof Settings) => SETTINGS.find((setting) => setting.field === field)!;

function complete(draft: Draft, reader: EnvReader): PublisherConfig | undefined {
  const { values } = draft;
  const where = `publisher ${JSON.stringify(draft.id)} (${draft.source})`;
  const need = (field: keyof Settings, why: string) => {
    if (values[field] !== undefined) return true;
    reader.report.problem(`${where}: ${draft.settingName(byField(field))} is missing: expected ${why}`);
    return false;
  };
  const misplaced = (field: keyof Settings, sink: PublisherSink) => {
    if (values[field] === undefined) return true;
    reader.report.problem(`${where}: ${draft.settingName(byField(field))} does not apply to sink ${sink}: expected it unset`);
    return false;
  };
  if (draft.invalid) return undefined;
  // every check runs, so one start reports every problem
  const checks = [need('sink', sinkKind.expected), need('url', brokerUrl.expected)];
  if (values.sink === 'nats') checks.push(need('subject', subject.expected), misplaced('exchange', 'nats'), misplaced('routingKey', 'nats'));
  if (values.sink === 'rabbitmq') checks.push(misplaced('subject', 'rabbitmq'));
  const ok = checks.every(Boolean);
  if (!ok || values.sink === undefined || values.url === undefined) return undefined;
  const common = {
    publisherId: draft.id,
    url: values.url,
    format: values.format ?? 'protobuf',
    timeoutMs: values.timeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS,
    autoStart: values.autoStart ?? true,
    enabled: values.enabled ?? true,
  } as const;
  return values.sink === 'nats'
    ? { ...common, sink: 'nats', subject: values.subject! }
    : { ...common, sink: 'rabbitmq', exchange: values.exchange ?? '', routingKey: values.routingKey };
}

function fromSettingVariables(reader: EnvReader): Draft[] {
  const drafts = new Map<string, Draft>();
  const names = reader
    .names()
    .filter((name) => name.startsWith(PUBLISHER_ENV_PREFIX))
    .sort();
  const pattern = `${PUBLISHER_ENV_PREFIX}<SETTING>__<PUBLISHER_ID>`;
  for (const name of names) {
    const rest = name.slice(PUBLISHER_ENV_PREFIX.length);
    const separator = rest.indexOf('__');
    if (separator <= 0 || separator + 2 >= rest.length) {
      reader.report.problem(`${name} is not a publisher setting: expected ${pattern}`);
      continue;
    }
    const setting = SETTINGS.find((candidate) => candidate.env === rest.slice(0, separator).toUpperCase());
    const id = rest.slice(separator + 2);
    if (setting === undefined) {
      reader.report.problem(
        `${name}: unknown publisher setting ${JSON.stringify(rest.slice(0, separator))}: expected one of ${SETTINGS.map((s) => s.env).join(', ')}`,
      );
      continue;
    }
    if (!parseValue(readSideId, id).ok) {
      reader.report.problem(`${name}: publisher id ${JSON.stringify(id)}: expected ${readSideId.expected.replace('a read side id', 'an id')}`);
      continue;
    }
    let draft = drafts.get(id);
    if (draft === undefined) {
      draft = {
        id,
        source: `${PUBLISHER_ENV_PREFIX}*__${id}`,
        values: {},
        invalid: false,
        settingName: (named) => `${PUBLISHER_ENV_PREFIX}${named.env}__${id}`,
      };
      drafts.set(id, draft);
    }
    const value = reader.parse(setting.codec, { name, value: reader.raw(name)! });
    if (value === undefined) draft.invalid = true;
    else (draft.values as Record<string, unknown>)[setting.field] = value;
  }
  return [...drafts.values()];
}

function fromYaml(options: PublishersOptions): Draft[] {
  const drafts: Draft[] = [];
  for (const { content, where } of readYamlDocuments(options.reader, 'COS_PUBLISHER_CONFIG', options.cwd)) {
    const draft = fromYamlDocument(content, where, options.reader);
    if (draft !== undefined) drafts.push(draft);
  }
  return drafts;
}

function fromYamlDocument(content: unknown, where: string, reader: EnvReader): Draft | undefined {
  const { report } = reader;
  const mapping = yamlMapping(content, where, YAML_KEYS, report);
  if (mapping === undefined) return undefined;
  const { scalar } = mapping;
  const idText = scalar('publisherId');
  const id = idText === undefined ? undefined : parseValue(readSideId, idText);
  if (id === undefined || !id.ok) {
    report.problem(`${where}: publisherId is missing or invalid: expected an id of 1..255 characters, no spaces or control characters`);
    return undefined;
  }
  const values: Partial<Settings> = {};
  for (const setting of SETTINGS) {
    const raw = scalar(setting.yaml);
    if (raw === undefined) continue;
    const parsed = parseValue(setting.codec, raw);
    if (parsed.ok) (values as Record<string, unknown>)[setting.field] = parsed.value;
    else {
      report.problem(invalidMessage(`${where}: ${setting.yaml}`, showValue(setting.yaml, raw), setting.codec.expected, parsed.details));
      mapping.invalid = true;
    }
  }
  return { id: id.value, source: where, values, invalid: mapping.invalid, settingName: (setting) => setting.yaml };
}

