import { createHash } from 'node:crypto';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import {
  HandlerFailedError,
  InternalError,
  InvalidArgumentError,
  RevisionMismatchError,
  type EntityState,
} from '@chiefofstate/core';
import {
  COS_ERROR_DOMAIN,
  ERROR_INFO_TYPE_URL,
  REVISION_MISMATCH_REASON,
  ProcessCommandResponseSchema,
  decodeErrorInfo,
  decodeRpcStatus,
  encodeErrorInfo,
  encodeRpcStatus,
  type MetaData,
} from '@chiefofstate/protocol';
import type { KeyRecord } from './ports.js';

/*
 * Retry-safe commands: what an entity remembers of its idempotency keys, and how an outcome is
 * recorded with its key and answered again.
 */

/** Outcomes of the newest keys of an entity kept in memory; older ones are read again on a hit. */
const OUTCOMES_KEPT = 4;
/** Rough bytes of a key in memory besides its text: the digest (base64) and the entry. */
const KEY_OVERHEAD_BYTES = 120;

/**
 * Handler statuses that say nothing about the command itself (it may succeed if sent again):
 * not recorded with the key, so a retry runs the command again. CANCELLED, UNKNOWN,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
 */
const TRANSIENT_HANDLER_CODES: ReadonlySet<number> = new Set([1, 2, 4, 8, 10, 13, 14, 15]);

export interface KnownKey {
  /** SHA-256 of the command body, base64 */
  readonly digest: string;
  /** epoch ms, the store's commit time */
  readonly recordedAt: number;
  /** the outcome, when kept here; else read from the store on a hit */
  outcome: KeyRecord | undefined;
}

/**
 * The idempotency keys of one entity known in memory, at most `max`, oldest dropped first.
 * `complete` says whether every key the store holds for the entity (within the retention
 * window) is here, so that a key not found here is new without asking the store.
 */
export class KnownKeys {
  private readonly byKey = new Map<string, KnownKey>();
  /** keys whose outcome is kept, oldest first */
  private readonly withOutcome: string[] = [];
  bytes = 0;

  constructor(
    private readonly max: number,
    public complete: boolean,
  ) {}

  /** The key when known and recorded within `retentionMs` of `now`. */
  get(key: string, now: number, retentionMs: number): KnownKey | undefined {
    const known = this.byKey.get(key);
    if (known === undefined) return undefined;
    if (known.recordedAt > now - retentionMs) return known;
    // expired: as good as absent (the store's copy is ignored as well, then removed)
    this.delete(key, known);
    return undefined;
  }

  remove(key: string): void {
    const known = this.byKey.get(key);
    if (known !== undefined) this.delete(key, known);
  }

  add(key: string, known: KnownKey): void {
    const previous = this.byKey.get(key);
    if (previous !== undefined) this.delete(key, previous);
    this.byKey.set(key, known);
    this.bytes += key.length + KEY_OVERHEAD_BYTES;
    if (known.outcome !== undefined) this.keepOutcome(key, known.outcome);
    while (this.byKey.size > this.max) {
      const [oldest, entry] = this.byKey.entries().next().value as [string, KnownKey];
      this.delete(oldest, entry);
      this.complete = false;
    }
  }

  private keepOutcome(key: string, outcome: KeyRecord): void {
    this.withOutcome.push(key);
    this.bytes += outcome.outcome.byteLength;
    if (this.withOutcome.length <= OUTCOMES_KEPT) return;
    const older = this.byKey.get(this.withOutcome.shift()!);
    if (older?.outcome !== undefined) {
      this.bytes -= older.outcome.outcome.byteLength;
      older.outcome = undefined;
    }
  }

  private delete(key: string, known: KnownKey): void {
    this.byKey.delete(key);
    this.bytes -= key.length + KEY_OVERHEAD_BYTES;
    if (known.outcome !== undefined) {
      this.bytes -= known.outcome.outcome.byteLength;
      known.outcome = undefined;
    }
  }
}

/** SHA-256 of the command body (the serialized Any), to tell a retry from a reused key. */
export function commandDigest(command: Any | undefined): Uint8Array {
  const body = toBinary(AnySchema, command ?? create(AnySchema));
  return new Uint8Array(createHash('sha256').update(body).digest());
}

export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** The record of a command that succeeded: its reply, as the edge sends it. */
export function replyRecord(key: string, digest: Uint8Array, state: Any, meta: MetaData): KeyRecord {
  const outcome = toBinary(ProcessCommandResponseSchema, create(ProcessCommandResponseSchema, { state, meta }));
  return { key, digest, outcome };
}

/**
 * The record of a command that failed for a reason a retry would meet again (the handler
 * refused it, its events or state were invalid, its expected revision did not match); undefined
 * for failures that say nothing about the command (the store, the handler unreachable, a
 * deadline, a bound), which a retry runs again.
 */
export function errorRecord(key: string, digest: Uint8Array, error: unknown): KeyRecord | undefined {
  if (error instanceof HandlerFailedError) {
    if (TRANSIENT_HANDLER_CODES.has(error.statusCode)) return undefined;
    return { key, digest, errorKind: error.code, outcome: encodeRpcStatus({ code: error.statusCode, message: error.statusMessage, details: error.details }) };
  }
  if (error instanceof RevisionMismatchError) {
    const info = encodeErrorInfo({
      reason: REVISION_MISMATCH_REASON,
      domain: COS_ERROR_DOMAIN,
      metadata: { expected: error.expected.toString(), actual: error.actual.toString() },
    });
    return { key, digest, errorKind: error.code, outcome: encodeRpcStatus({ code: 0, message: error.message, details: [{ typeUrl: ERROR_INFO_TYPE_URL, value: info }] }) };
  }
  if (error instanceof InvalidArgumentError) return { key, digest, errorKind: error.code, outcome: encodeRpcStatus({ code: 0, message: error.message, details: [] }) };
  return undefined;
}

/** What a recorded outcome answers: the reply, or the error to throw. */
export function replayOf(record: KeyRecord): EntityState | { error: Error } {
  if (record.errorKind === undefined) {
    const reply = fromBinary(ProcessCommandResponseSchema, record.outcome);
    if (reply.state === undefined || reply.meta === undefined) return { error: new InternalError('a recorded reply has no state or meta') };
    return { state: reply.state, meta: reply.meta };
  }
  const status = decodeRpcStatus(record.outcome);
  switch (record.errorKind) {
    case 'COS_HANDLER_FAILED':
      return { error: new HandlerFailedError(status.code, status.message, status.details) };
    case 'COS_INVALID_ARGUMENT':
      return { error: new InvalidArgumentError(status.message) };
    case 'COS_REVISION_MISMATCH': {
      const detail = status.details.find((d) => d.typeUrl === ERROR_INFO_TYPE_URL);
      const metadata = detail ? decodeErrorInfo(detail.value).metadata : {};
      return { error: new RevisionMismatchError(BigInt(metadata['expected'] ?? 0), BigInt(metadata['actual'] ?? 0), status.message) };
    }
    default:
      // recorded by a later release: nothing this one can answer faithfully
      return { error: new InternalError(`the outcome recorded with this idempotency key is of an unknown kind (${record.errorKind})`) };
  }
}
