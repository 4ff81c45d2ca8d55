import { isIP } from 'node:net';
import { z } from 'zod';
import {
  CLIENT_AUTH_MODES,
  DEPLOYMENT_MODES,
  FAILURE_POLICIES,
  HANDLER_PROTOCOLS,
  LOG_LEVELS,
  LOG_STYLES,
  OTLP_PROTOCOLS,
  TRACE_SAMPLERS,
  type ClientAuthMode,
  type DeploymentMode,
  type FailurePolicy,
  type HandlerProtocol,
  type LogLevel,
  type LogStyle,
  type OtlpProtocol,
  type TraceSamplerName,
} from './types.js';

/**
 * How one textual value becomes a typed one: a zod schema over the raw string, and the words
 * that finish "expected ..." when it does not parse. Problem messages are built from
 * `expected` (plus the messages of custom issues, which name the bad item of a list), never
 * from zod's generic texts, so every message reads the same way.
 */
export interface Codec<T> {
  readonly schema: z.ZodType<T, string>;
  readonly expected: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; details: string[] };

export function parseValue<T>(codec: Codec<T>, raw: string): ParseResult<T> {
  const result = codec.schema.safeParse(raw);
  if (result.success) return { ok: true, value: result.data };
  const details = result.error.issues
    .filter((issue) => issue.code === 'custom' && issue.params?.[DETAIL] === true)
    .map((issue) => issue.message);
  return { ok: false, details };
}

/** Marks custom issues whose message is meant for users (zod's own messages are not shown). */
const DETAIL = 'cosDetail';

/** setTimeout fires at once for delays above this (a signed 32-bit number of ms). */
export const MAX_TIMER_MS = 2_147_483_647;

const integer = z
  .string()
  .trim()
  .regex(/^[+-]?\d+$/)
  .transform(Number);

export function integerIn(min: number, max: number, expected = `an integer ${min}..${max}`): Codec<number> {
  return { schema: integer.pipe(z.number().int().min(min).max(max)), expected };
}

export const port = integerIn(1, 65_535, 'an integer port 1..65535');

export const positiveInteger = integerIn(1, Number.MAX_SAFE_INTEGER, 'an integer >= 1');

export const shardCount: Codec<number> = {
  schema: integer.pipe(
    z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .refine((n) => (n & (n - 1)) === 0),
  ),
  expected: 'a power of two from 1 to 10000 (1, 2, 4, ..., 8192)',
};

export const boolean: Codec<boolean> = {
  schema: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(['true', 'false', '1', '0']))
    .transform((value) => value === 'true' || value === '1'),
  expected: 'true or false (or 1 / 0)',
};

export const milliseconds = integerIn(1, MAX_TIMER_MS, `an integer number of milliseconds 1..${MAX_TIMER_MS}`);

/** Seconds from `min`, decimals allowed, converted to whole milliseconds. */
function secondsFrom(min: 0 | 1, expected: string): Codec<number> {
  return {
    schema: z
      .string()
      .trim()
      .regex(/^\d+(\.\d+)?$/)
      .transform((value) => Math.round(Number(value) * 1000))
      .pipe(z.number().int().min(min).max(MAX_TIMER_MS)),
    expected,
  };
}

/** Seconds, decimals allowed, converted to whole milliseconds. */
export const secondsAsMs = secondsFrom(1, `a number of seconds > 0 (at most ${Math.floor(MAX_TIMER_MS / 1000)})`);

/** Seconds as secondsAsMs, where 0 means never (COS_TLS_RELOAD_INTERVAL). */
export const secondsOrNeverAsMs = secondsFrom(0, `a number of seconds >= 0, 0 for never (at most ${Math.floor(MAX_TIMER_MS / 1000)})`);

const HOST_NAME = /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

function isHost(value: string): boolean {
  if (isIP(value) !== 0) return true;
  if (value.startsWith('[') && value.endsWith(']')) return isIP(value.slice(1, -1)) === 6;
  return value.length <= 253 && HOST_NAME.test(value);
}


export const host: Codec<string> = {
  schema: z.string().trim().refine(isHost),
  expected: 'a host name or IP address, without scheme or port',
};

export const ipAddress: Codec<string> = {
  schema: z
    .string()
    .trim()
    .refine((value) => isIP(value) !== 0),
  expected: 'an IPv4 or IPv6 address',
};

export const text: Codec<string> = { schema: z.string().trim().min(1), expected: 'a non-empty text' };

/** Unquoted PostgreSQL identifiers only: schema names end up in SQL. */
export const sqlIdentifier: Codec<string> = {
  schema: z
    .string()
    .trim()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/),
  expected: 'a PostgreSQL identifier: letters, digits and _, not starting with a digit, at most 63 characters',
};

/** Secrets are taken verbatim (no trimming): a password may well end in a space. */
export const secret: Codec<string> = { schema: z.string(), expected: 'a password' };

/** The cluster secret, verbatim like a password, long enough not to be guessed. */
export const clusterSecret: Codec<string> = { schema: z.string().min(16), expected: 'a secret of at least 16 characters' };

export const readSideId: Codec<string> = {
  schema: z
    .string()
    .trim()
    .regex(/^[^\s\p{Cc}]{1,255}$/u),
  expected: 'a read side id: 1..255 characters, no spaces or control characters',
};

export const httpUrl: Codec<string> = {
  schema: z
    .string()
    .trim()
    .refine((value) => {
      try {
        const url = new URL(value);
        return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
      } catch {
        return false;
      }
    }),
  expected: 'an http:// or https:// URL',
};

function oneOf<const T extends readonly string[]>(
  values: T,
  normalise: (value: string) => string,
  expected: string,
): Codec<T[number]> {
  return {
    schema: z
      .string()
      .trim()
      .transform(normalise)
      .pipe(z.enum(values as unknown as [T[number], ...T[number][]])),
    expected,
  };
}

const lower = (value: string) => value.toLowerCase();

/** One of `values`, case-insensitive. */
export function oneOfLower<const T extends readonly string[]>(values: T, expected: string): Codec<T[number]> {
  return oneOf(values, lower, expected);
}
const upper = (value: string) => value.toUpperCase();

export const clientAuthMode: Codec<ClientAuthMode> = oneOf(CLIENT_AUTH_MODES, lower, 'required or optional');
export const logLevel: Codec<LogLevel> = oneOf(LOG_LEVELS, lower, 'one of trace, debug, info, warn, error');
export const logStyle: Codec<LogStyle> = oneOf(LOG_STYLES, upper, 'JSON or SIMPLE');
export const deploymentMode: Codec<DeploymentMode> = oneOf(DEPLOYMENT_MODES, lower, 'docker or kubernetes');
export const failurePolicy: Codec<FailurePolicy> = oneOf(
  FAILURE_POLICIES,
  upper,
  'one of STOP, SKIP, REPLAY_STOP, REPLAY_SKIP',
);

export const traceSampler: Codec<TraceSamplerName> = oneOf(
  TRACE_SAMPLERS,
  lower,
  `one of ${TRACE_SAMPLERS.join(', ')}`,
);

/** A plain decimal 0..1 (0, 0.25, 1). */
export const ratio: Codec<number> = {
  schema: z
    .string()
    .trim()
    .regex(/^(\d+(\.\d*)?|\.\d+)$/)
    .transform(Number)
    .pipe(z.number().min(0).max(1)),
  expected: 'a number from 0 to 1, like 0.25',
};

/** `grpc`, the spec's third protocol, gets its own reason: it is a valid value COS chose not to speak. */
export const otlpProtocol: Codec<OtlpProtocol> = {
  schema: z
    .string()
    .trim()
    .toLowerCase()
    .superRefine((value, ctx) => {
      if (value === 'grpc') {
        ctx.addIssue({
          code: 'custom',
          message: 'OTLP over gRPC is not supported; COS exports over HTTP only',
          params: { [DETAIL]: true },
        });
      }
    })
    .pipe(z.enum(OTLP_PROTOCOLS)),
  expected: OTLP_PROTOCOLS.join(' or '),
};

/**
 * A comma-separated list: items trimmed, empty items dropped, duplicates removed (first kept).
 * A bad item is named in a custom issue so the problem message can point at it.
 */
function listOf(
  check: (item: string) => boolean,
  expected: string,
  normalise: (item: string) => string = (item) => item,
): Codec<string[]> {
  return {
    schema: z
      .string()
      .transform((value) => [
        ...new Set(
          value
            .split(',')
            .map((item) => item.trim())
            .filter((item) => item !== '')
            .map(normalise),
        ),
      ])
      .superRefine((items, ctx) => {
        for (const item of items) {
          if (!check(item)) 
            ctx.addIssue({ code: 'custom', message: `${JSON.stringify(item)} is not one`, params: { [DETAIL]: true } });
        }
      }),
    expected,
  };
}

const MESSAGE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/**
 * Fully qualified message names. A type URL is accepted too and cut after its last `/`, which
 * is what validation compares against.
 */
export const messageNames = listOf(
  (item) => MESSAGE_NAME.test(item),
  'comma-separated protobuf message names like my.package.State',
  (item) => item.slice(item.lastIndexOf('/') + 1),
);

/** gRPC metadata keys: lower-case token characters; `grpc-` is reserved by gRPC itself. */
export const headerNames = listOf(
  (item) => /^[0-9a-z_.-]+$/.test(item) && !item.startsWith('grpc-'),
  'comma-separated header names (letters, digits, - _ .; not starting with grpc-)',
  lower,
);

export const kafkaBrokers = listOf((item) => {
  const colon = item.lastIndexOf(':');
  if (colon <= 0) return false;
  return isHost(item.slice(0, colon)) && parseValue(port, item.slice(colon + 1)).ok;
}, 'comma-separated host:port pairs');

/** Client-certificate identities (a CN, a DNS or URI name): no control characters or spaces. */
export const identityNames = listOf(
  (item) => /^[^\s\p{Cc},]{1,1024}$/u.test(item),
  'comma-separated certificate names (a CN, DNS name or URI such as spiffe://...)',
);

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^(\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;

/** A Go-style duration (`500ms`, `10s`, `1m30s`, `1h`) in whole ms, or undefined when it is not one. */
function durationMs(value: string): number | undefined {
  if (!DURATION.test(value)) return undefined;
  let total = 0;
  for (const [, amount, unit] of value.matchAll(DURATION_PART)) total += Number(amount) * DURATION_UNITS_MS[unit!]!;
  return Math.round(total);
}

/**
 * A duration as the newest upstream server writes it (`60s`, `1m`, `1h`, `1m30s`, `500ms`), or a
 * bare number of seconds as COS's other timeouts (decimals allowed); whole ms from `minMs` to `maxMs`.
 */
export function duration(minMs: number, maxMs: number, expected: string): Codec<number> {
  return {
    schema: z
      .string()
      .trim()
      .transform((value, context) => {
        const ms = /^\d+(\.\d+)?$/.test(value) ? Math.round(Number(value) * 1000) : durationMs(value);
        if (ms === undefined) {
          context.addIssue({ code: 'custom', message: 'not a duration' });
          return z.NEVER;
        }
        return ms;
      })
      .pipe(z.number().int().min(minMs).max(maxMs)),
    expected,
  };
}

/**
 * A read side's `timeout`: a bare integer is milliseconds (as before); with a unit (`5s`,
 * `500ms`, `1m`) it is a duration, as the newest upstream server writes it.
 */
export const millisecondsOrDuration: Codec<number> = {
  schema: z
    .string()
    .trim()
    .transform((value, context) => {
      const ms = /^\d+$/.test(value) ? Number(value) : durationMs(value);
      if (ms === undefined) {
        context.addIssue({ code: 'custom', message: 'not a duration' });
        return z.NEVER;
      }
      return ms;
    })
    .pipe(z.number().int().min(1).max(MAX_TIMER_MS)),
  expected: `an integer number of milliseconds 1..${MAX_TIMER_MS}, or a duration such as 5s, 500ms or 1m`,
};

/** How COS calls a handler: `grpc` or `http` (the newest upstream server's HTTP/JSON handler protocol). */
export const handlerProtocol: Codec<HandlerProtocol> = oneOf(HANDLER_PROTOCOLS, lower, 'grpc or http');

/** Browser origins (scheme://host[:port]) allowed to call COS across origins, or `*` for any. */
export const corsOrigins = listOf((item) => {
  if (item === '*') return true;
  try {
    const url = new URL(item);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === item;
  } catch {
    return false;
  }
}, 'comma-separated origins like https://app.example.com (scheme, host and port only), or *');
