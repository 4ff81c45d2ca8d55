import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs as parseCommandLine } from 'node:util';
import { create, toJson, type MessageInitShape } from '@bufbuild/protobuf';
import { anyPack, AnySchema, timestampDate, type Any } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { ChiefOfStateService, EXPECTED_REVISION_HEADER, IDEMPOTENCY_KEY_HEADER, type MetaData } from '@chiefofstate/protocol';
import {
  CloseAccountSchema,
  DepositSchema,
  OpenAccountSchema,
  WithdrawSchema,
} from './gen/bank/v1/bank_pb.js';
import { grpcCodeName } from './code-name.js';
import { watchAccount } from './watch.js';
import { bankRegistry } from './write-handler.js';

/**
 * The bank CLI: sends bank commands to Chief-of-State (not to the handler: COS calls the handler,
 * persists the events, and answers with the new state). Kept apart from cli.ts so tests run it
 * in-process.
 */

export const DEFAULT_COS_ADDRESS = '127.0.0.1:9000';

export const USAGE = `usage: sample-bank-cli [--address HOST:PORT] COMMAND ACCOUNT_ID [ARGS]

Sends a bank command to Chief-of-State and prints the account's new state as JSON.
Amounts are integer cents.

commands:
  open ACCOUNT_ID OWNER [INITIAL_DEPOSIT]   open an account (optionally with a first deposit)
  deposit ACCOUNT_ID AMOUNT                 add money
  withdraw ACCOUNT_ID AMOUNT                take money (never more than the balance)
  close ACCOUNT_ID                          close an account whose balance is 0
  get ACCOUNT_ID                            show the current state (GetState)
  watch ACCOUNT_ID                          stream the account's changes as they happen (Subscribe),
                                            one JSON line per event, until Ctrl-C

options:
  --address HOST:PORT   Chief-of-State's gRPC address (env COS_ADDRESS, default ${DEFAULT_COS_ADDRESS};
                        a HOST alone gets port COS_PORT or 9000)
  --timeout MS          deadline of each attempt (default 10000)
  --idempotency-key KEY the command's idempotency key (default: a new UUID); every retry sends the
                        same key, so the command is applied once however many attempts it takes
  --retries N           attempts after the first on UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN, ABORTED
                        or RESOURCE_EXHAUSTED (default 3), with backoff
  --expected-revision N run only if the account is at revision N (0: only if it is new)
  --from-revision N     watch: first the account's events from revision N on (1: all), then live
  --count N             watch: stop after N events
  -h, --help            this text
`;

export interface CliIo {
  /** environment, for COS_ADDRESS */
  env: Readonly<Record<string, string | undefined>>;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** ends a watch (the process aborts it on SIGINT / SIGTERM) */
  signal?: AbortSignal;
}

class UsageError extends Error {}

interface ParsedArgs {
  address: string;
  timeoutMs: number;
  idempotencyKey: string;
  retries: number;
  expectedRevision: string | undefined;
  fromRevision: bigint | undefined;
  count: number | undefined;
  command: string;
  accountId: string;
  rest: string[];
}

const OPTIONS = {
  address: { type: 'string' },
  timeout: { type: 'string' },
  'idempotency-key': { type: 'string' },
  retries: { type: 'string' },
  'expected-revision': { type: 'string' },
  'from-revision': { type: 'string' },
  count: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parseArgs(argv: readonly string[], env: CliIo['env']): ParsedArgs | 'help' {
  // not strict: a negative amount (`withdraw acc -5`) is an argument the handler refuses, not an
  // option; the tokens keep it in its place among the positionals
  const { tokens } = parseCommandLine({ args: [...argv], options: OPTIONS, strict: false, allowPositionals: true, tokens: true });
  const values = new Map<string, string>();
  const positional: string[] = [];
  for (const token of tokens) {
    if (token.kind === 'positional') positional.push(token.value);
    else if (token.kind === 'option-terminator') continue;
    else if (token.name === 'help') return 'help';
    else if (/^-\d/.test(token.rawName)) positional.push(token.rawName);
    else if (!(token.name in OPTIONS)) throw new UsageError(`unknown option ${token.rawName}`);
    else if (token.value === undefined || token.value === '') throw new UsageError(`${token.rawName} needs a value`);
    else values.set(token.name, token.value);
  }
  const expectedRevision = values.get('expected-revision');
  if (expectedRevision !== undefined && !/^\d+$/.test(expectedRevision)) {
    throw new UsageError('--expected-revision must be a revision (an integer >= 0)');
  }
  const retries = Number(values.get('retries') ?? 3);
  if (!Number.isInteger(retries) || retries < 0) throw new UsageError('--retries must be an integer >= 0');
  const timeoutMs = Number(values.get('timeout') ?? 10_000);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new UsageError('--timeout must be a positive integer');
  const [command, accountId, ...rest] = positional;
  if (command === undefined) throw new UsageError('a command is required');
  if (accountId === undefined || accountId === '') throw new UsageError(`${command} needs an ACCOUNT_ID`);
  const fromRevisionText = values.get('from-revision');
  if (fromRevisionText !== undefined && !/^\d+$/.test(fromRevisionText)) throw new UsageError('--from-revision must be a revision (an integer >= 0)');
  const countText = values.get('count');
  const count = countText === undefined ? undefined : Number(countText);
  if (count !== undefined && (!Number.isInteger(count) || count <= 0)) throw new UsageError('--count must be a positive integer');
  const fromRevision = fromRevisionText === undefined ? undefined : BigInt(fromRevisionText);
  if ((fromRevision !== undefined || count !== undefined) && command !== 'watch') throw new UsageError('--from-revision and --count are options of watch');
  return {
    address: values.get('address') ?? (env['COS_ADDRESS']?.trim() || DEFAULT_COS_ADDRESS),
    timeoutMs,
    idempotencyKey: values.get('idempotency-key') ?? randomUUID(),
    retries,
    expectedRevision,
    fromRevision,
    count,
    command,
    accountId,
    rest,
  };
}

function cents(value: string | undefined, name: string): bigint {
  // Signs are let through on purpose: the handler's validation answers, as it would any client.
  if (value === undefined || !/^-?\d+$/.test(value)) throw new UsageError(`${name} must be an integer number of cents`);
  return BigInt(value);
}

function commandOf(args: ParsedArgs): Any | undefined {
  const expect = (count: number, max = count): void => {
    if (args.rest.length < count || args.rest.length > max) throw new UsageError(`wrong number of arguments for ${args.command}`);
  };
  switch (args.command) {
    case 'open': {
      expect(1, 2);
      const init: MessageInitShape<typeof OpenAccountSchema> = { owner: args.rest[0] as string };
      if (args.rest[1] !== undefined) init.initialDepositCents = cents(args.rest[1], 'INITIAL_DEPOSIT');
      return anyPack(OpenAccountSchema, create(OpenAccountSchema, init));
    }
    case 'deposit':
      expect(1);
      return anyPack(DepositSchema, create(DepositSchema, { amountCents: cents(args.rest[0], 'AMOUNT') }));
    case 'withdraw':
      expect(1);
      return anyPack(WithdrawSchema, create(WithdrawSchema, { amountCents: cents(args.rest[0], 'AMOUNT') }));
    case 'close':
      expect(0);
      return anyPack(CloseAccountSchema, create(CloseAccountSchema));
    case 'get':
    case 'watch':
      expect(0);
      return undefined;
    default:
      throw new UsageError(`unknown command ${args.command}`);
  }
}

function render(state: Any | undefined, meta: MetaData | undefined): string {
  const out = {
    accountId: meta?.entityId ?? '',
    revision: meta?.revisionNumber ?? 0,
    revisionDate: meta?.revisionDate ? timestampDate(meta.revisionDate).toISOString() : null,
    // toJson needs the registry to turn the Any into a readable bank.v1.BankAccount
    state: state ? toJson(AnySchema, state, { registry: bankRegistry }) : null,
  };
  return `${JSON.stringify(out, null, 2)}\n`;
}

function renderError(error: ConnectError): string {
  let text = `${grpcCodeName(error.code)}: ${error.rawMessage}\n`;
  const known = new Set<string>();
  for (const detail of error.findDetails(bankRegistry)) {
    known.add(detail.$typeName);
    const schema = bankRegistry.getMessage(detail.$typeName);
    text += `  detail ${detail.$typeName} ${schema ? JSON.stringify(toJson(schema, detail)) : ''}\n`;
  }
  for (const detail of error.details) {
    const type = 'type' in detail ? detail.type : detail.desc.typeName;
    if (!known.has(type)) text += `  detail ${type} (not a bank.v1 message)\n`;
  }
  return text;
}

/**
 * `host:port`, `[v6]:port` or a URL. A bare host (COS_ADDRESS is also the server's own bind
 * address setting, e.g. 0.0.0.0) gets COS_PORT or 9000, and a wildcard address means this host.
 */
export function cosBaseUrl(address: string, env: CliIo['env']): string {
  if (/^https?:\/\//.test(address)) return address;
  const withPort = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(address);
  let host = withPort?.[1] ?? address;
  const port = withPort?.[2] ?? (env['COS_PORT']?.trim() || '9000');
  host = host.replace(/^\[(.*)\]$/, '$1');
  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Statuses after which the command may or may not have run: sent again with the same key. */
const RETRYABLE: ReadonlySet<Code> = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Unknown, Code.Aborted, Code.ResourceExhausted]);

/**
 * The call, then up to `retries` more attempts when it fails in a way that leaves its outcome
 * open, with backoff (200 ms, doubling, at most 2 s). The idempotency key makes that safe: COS
 * answers a command it already applied with its first reply.
 */
async function withRetries<T>(args: ParsedArgs, io: CliIo, call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const failure = ConnectError.from(error);
      if (attempt >= args.retries || !RETRYABLE.has(failure.code)) throw failure;
      io.stderr(`${grpcCodeName(failure.code)}: ${failure.rawMessage}; retrying with idempotency key ${args.idempotencyKey}\n`);
      await sleep(Math.min(2000, 200 * 2 ** attempt));
    }
  }
}

/** Runs the CLI with `argv` (without node and the script); resolves to the process exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let args: ParsedArgs;
  let command: Any | undefined;
  try {
    const parsed = parseArgs(argv, io.env);
    if (parsed === 'help') {
      io.stdout(USAGE);
      return 0;
    }
    args = parsed;
    command = commandOf(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr(`${error.message}\n\n${USAGE}`);
    return 2;
  }

  const baseUrl = cosBaseUrl(args.address, io.env);
  const sessionManager = new Http2SessionManager(baseUrl);
  const client = createClient(ChiefOfStateService, createGrpcTransport({ baseUrl, sessionManager }));
  try {
    if (args.command === 'watch') {
      const { fromRevision, count, retries } = args;
      return await watchAccount(client, { accountId: args.accountId, fromRevision, count, retries, signal: io.signal ?? new AbortController().signal }, io);
    }
    const headers: Record<string, string> = { [IDEMPOTENCY_KEY_HEADER]: args.idempotencyKey };
    if (args.expectedRevision !== undefined) headers[EXPECTED_REVISION_HEADER] = args.expectedRevision;
    const { state, meta } =
      command === undefined
        ? await client.getState({ entityId: args.accountId }, { timeoutMs: args.timeoutMs })
        : await withRetries(args, io, () => client.processCommand({ entityId: args.accountId, command }, { timeoutMs: args.timeoutMs, headers }));
    io.stdout(render(state, meta));
    return 0;
  } catch (error) {
    io.stderr(renderError(ConnectError.from(error)));
    return 1;
  } finally {
    // Closes the HTTP/2 connection so the process can exit.
    sessionManager.abort();
  }
}
