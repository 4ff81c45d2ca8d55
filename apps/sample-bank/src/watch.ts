import { setTimeout as sleep } from 'node:timers/promises';
import { toJson } from '@bufbuild/protobuf';
import { AnySchema, timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type Client } from '@connectrpc/connect';
import type { ChiefOfStateService, SubscribeResponse } from '@chiefofstate/protocol';
import { grpcCodeName } from './code-name.js';
import { bankRegistry } from './write-handler.js';

/**
 * `watch ACCOUNT_ID`: the account's changes as they happen, through COS's Subscribe (a server
 * stream), one JSON line per event. With a start revision COS first sends the account's history
 * from there, then live events, without a gap or a duplicate between the two.
 */

export interface WatchOptions {
  readonly accountId: string;
  /** catch-up from this revision (1: the whole history); undefined: live only */
  readonly fromRevision: bigint | undefined;
  /** stop after this many events; undefined: until the signal or the end of the stream */
  readonly count: number | undefined;
  /** resubscriptions in a row after a lost stream (UNAVAILABLE, e.g. a COS restart) */
  readonly retries: number;
  /** ends the watch (Ctrl-C) */
  readonly signal: AbortSignal;
}

export interface WatchIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** A stream lost this way is picked up again where it stopped. */
const RESUMABLE: ReadonlySet<Code> = new Set([Code.Unavailable, Code.Unknown, Code.Internal]);

/** One event as a JSON line: the account, its revision and date, the event and the state it produced. */
export function renderChange(message: SubscribeResponse): string {
  const meta = message.meta;
  const json = (value: SubscribeResponse['event']) => (value ? toJson(AnySchema, value, { registry: bankRegistry }) : null);
  return `${JSON.stringify({
    accountId: meta?.entityId ?? '',
    revision: meta?.revisionNumber ?? 0,
    revisionDate: meta?.revisionDate ? timestampDate(meta.revisionDate).toISOString() : null,
    event: json(message.event),
    state: json(message.resultingState),
  })}\n`;
}

/**
 * Streams the account's changes to `io.stdout`; resolves to the exit code (0 when stopped by the
 * signal, by `count` or by the server ending the stream, 1 on an error). A lost stream is
 * subscribed again after the last revision printed (so nothing is missed or printed twice); a
 * live-only watch lost before its first event starts live again, and events written meanwhile
 * are not printed.
 */
export async function watchAccount(client: Client<typeof ChiefOfStateService>, options: WatchOptions, io: WatchIo): Promise<number> {
  let next = options.fromRevision;
  let printed = 0;
  for (let attempt = 0; ; ) {
    try {
      const stream = client.subscribe(
        { entityId: options.accountId, ...(next !== undefined ? { fromRevision: next } : {}) },
        { signal: options.signal },
      );
      for await (const message of stream) {
        io.stdout(renderChange(message));
        next = BigInt(message.meta?.revisionNumber ?? 0) + 1n;
        attempt = 0;
        // leaving the loop cancels the call
        if (options.count !== undefined && ++printed >= options.count) return 0;
      }
      return 0;
    } catch (error) {
      if (options.signal.aborted) return 0;
      const failure = ConnectError.from(error);
      if (attempt >= options.retries || !RESUMABLE.has(failure.code)) {
        io.stderr(`${grpcCodeName(failure.code)}: ${failure.rawMessage}\n`);
        return 1;
      }
      io.stderr(
        `${grpcCodeName(failure.code)}: ${failure.rawMessage}; subscribing again ${next !== undefined ? `from revision ${next}` : '(live)'}\n`,
      );
      await sleep(Math.min(2000, 200 * 2 ** attempt++), undefined, { signal: options.signal }).catch(() => {});
      if (options.signal.aborted) return 0;
    }
  }
}
