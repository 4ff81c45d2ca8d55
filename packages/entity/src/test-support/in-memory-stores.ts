import { setTimeout as sleep } from 'node:timers/promises';
import { JournalConflictError } from '@chiefofstate/core';
import type {
  JournalAppend,
  JournalAppendResult,
  JournalPort,
  LatestWithKeys,
  ReadOptions,
  SnapshotPort,
  SnapshotSave,
  StoredKey,
  StoredKeyDigest,
  StoredRevision,
} from '../ports.js';

/**
 * A journal in memory with the real one's contract (revision check, atomic multi-event append,
 * resolves after "commit"), for runtime tests that do not need PostgreSQL. `latencyMs` makes
 * appends take time so concurrency bugs show.
 */
export class InMemoryJournal implements JournalPort {
  readonly entities = new Map<string, StoredRevision[]>();
  /** each entity's latest revision, kept when events are deleted (as the real journal does) */
  readonly heads = new Map<string, bigint>();
  /** idempotency keys by entity, then key (no expiry: tests set `retentionMs` on the runtime) */
  readonly keys = new Map<string, Map<string, StoredKey>>();
  appendCalls: JournalAppend[] = [];
  /** reads of keys: `readKeys` and `findKeys` calls */
  keyReads: Array<{ entityId: string; keys?: readonly string[] }> = [];
  /** when set, the next append commits and then throws it (an outcome unknown to its writer) */
  failAfterCommit: Error | undefined;
  latencyMs = 0;
  /** when set, the next append throws it (once) */
  failNextAppend: Error | undefined;
  private position = 0n;

  async append(request: JournalAppend): Promise<JournalAppendResult> {
    this.appendCalls.push(request);
    if (this.latencyMs > 0) await sleep(this.latencyMs);
    if (this.failNextAppend) {
      const error = this.failNextAppend;
      this.failNextAppend = undefined;
      throw error;
    }
    const events = this.entities.get(request.entityId) ?? [];
    const current = this.heads.get(request.entityId) ?? 0n;
    if (current !== request.expectedRevision) throw new JournalConflictError(request.entityId, request.expectedRevision);
    const positions: bigint[] = [];
    request.events.forEach((payload, i) => {
      events.push({ revision: request.expectedRevision + BigInt(i + 1), payload });
      positions.push(++this.position);
    });
    this.entities.set(request.entityId, events);
    this.heads.set(request.entityId, current + BigInt(request.events.length));
    const writtenAt = new Date();
    if (request.keys && request.keys.length > 0) {
      const keys = this.keys.get(request.entityId) ?? new Map<string, StoredKey>();
      for (const key of request.keys) keys.set(key.key, { ...key, recordedAt: writtenAt });
      this.keys.set(request.entityId, keys);
    }
    if (this.failAfterCommit) {
      const error = this.failAfterCommit;
      this.failAfterCommit = undefined;
      throw error;
    }
    return {
      firstRevision: request.expectedRevision + 1n,
      lastRevision: request.expectedRevision + BigInt(request.events.length),
      positions,
      writtenAt,
    };
  }

  readKeys(entityId: string, limit: number, _options?: ReadOptions): Promise<StoredKeyDigest[]> {
    this.keyReads.push({ entityId });
    const keys = [...(this.keys.get(entityId)?.values() ?? [])].slice(0, limit);
    return Promise.resolve(keys.map(({ key, digest, recordedAt }) => ({ key, digest, recordedAt })));
  }

  async readLatestWithKeys(entityId: string, keyLimit: number, options?: ReadOptions): Promise<LatestWithKeys> {
    return { latest: await this.readLatest(entityId, options), keys: await this.readKeys(entityId, keyLimit, options) };
  }

  findKeys(entityId: string, keys: readonly string[], _options?: ReadOptions): Promise<StoredKey[]> {
    this.keyReads.push({ entityId, keys });
    const recorded = this.keys.get(entityId);
    return Promise.resolve(keys.flatMap((key) => recorded?.get(key) ?? []));
  }

  readLatest(entityId: string, _options?: ReadOptions): Promise<StoredRevision | undefined> {
    const events = this.entities.get(entityId);
    return Promise.resolve(events?.[events.length - 1]);
  }

  deleteEventsBefore(entityId: string, revision: bigint): Promise<number> {
    const events = this.entities.get(entityId) ?? [];
    const kept = events.filter((e) => e.revision >= revision);
    this.entities.set(entityId, kept);
    return Promise.resolve(events.length - kept.length);
  }

  revisions(entityId: string): bigint[] {
    return (this.entities.get(entityId) ?? []).map((e) => e.revision);
  }
}

export class InMemorySnapshots implements SnapshotPort {
  readonly saved: SnapshotSave[] = [];
  failSaves = false;

  constructor(private readonly retain = 2) {}

  save(snapshot: SnapshotSave): Promise<{ oldestRetainedRevision: bigint }> {
    if (this.failSaves) return Promise.reject(new Error('snapshot store down'));
    this.saved.push(snapshot);
    const mine = this.saved
      .filter((s) => s.entityId === snapshot.entityId)
      .map((s) => s.revision)
      .sort((a, b) => (a < b ? 1 : -1))
      .slice(0, this.retain);
    return Promise.resolve({ oldestRetainedRevision: mine[mine.length - 1]! });
  }

  loadLatest(entityId: string, _options?: ReadOptions): Promise<StoredRevision | undefined> {
    let latest: SnapshotSave | undefined;
    for (const s of this.saved) if (s.entityId === entityId && (!latest || s.revision > latest.revision)) latest = s;
    return Promise.resolve(latest && { revision: latest.revision, payload: latest.payload });
  }
}

/** The journal, recording the entity of each readLatest, i.e. of each (re)load from the store. */
export function countingReads<J extends InMemoryJournal>(journal: J): { journal: J; reads: string[] } {
  const reads: string[] = [];
  const readLatest = journal.readLatest.bind(journal);
  journal.readLatest = (id) => {
    reads.push(id);
    return readLatest(id);
  };
  return { journal, reads };
}
