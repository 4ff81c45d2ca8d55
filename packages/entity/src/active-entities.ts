import type { Any } from '@bufbuild/protobuf/wkt';
import type { MetaData } from '@chiefofstate/protocol';
import type { KnownKeys } from './idempotency.js';

/**
 * An active entity: its mailbox of `J`s and, once loaded, its cached state. Slots are linked in
 * least recently used order (intrusive list: no per-touch allocation or hashing).
 */
export interface EntitySlot<J> {
  readonly entityId: string;
  /** whether state/meta/revision reflect the store (false: reload before the next command) */
  loaded: boolean;
  state: Any | undefined;
  meta: MetaData | undefined;
  /** revision of the latest persisted event, 0 for none */
  revision: number;
  /** serialized size of the cached state and meta plus its keys' bytes, counted in ActiveEntities.bytes while listed */
  bytes: number;
  /** serialized size of the cached state and meta */
  stateBytes: number;
  /** its idempotency keys known here; undefined until a command with a key needs them, and after a reload */
  keys: KnownKeys | undefined;
  /** the mailbox; jobs[head..] are waiting or being handled */
  jobs: (J | undefined)[];
  head: number;
  running: boolean;
  /** epoch ms of the last arrival or completion */
  lastUsed: number;
  prev: EntitySlot<J> | undefined;
  next: EntitySlot<J> | undefined;
}

/**
 * The set of active entities, by id and in LRU order, with the bytes their cached states take.
 * Passivation removes idle slots only: a slot with queued or running commands is never dropped.
 */
export class ActiveEntities<J> {
  private readonly byId = new Map<string, EntitySlot<J>>();
  /** least recently used */
  private oldest: EntitySlot<J> | undefined;
  /** most recently used */
  private newest: EntitySlot<J> | undefined;
  passivated = 0;
  /** serialized bytes of the cached states and metas of the listed slots */
  bytes = 0;

  get size(): number {
    return this.byId.size;
  }

  get(entityId: string): EntitySlot<J> | undefined {
    return this.byId.get(entityId);
  }

  create(entityId: string, now: number): EntitySlot<J> {
    const slot: EntitySlot<J> = {
      entityId,
      loaded: false,
      state: undefined,
      meta: undefined,
      revision: 0,
      bytes: 0,
      stateBytes: 0,
      keys: undefined,
      jobs: [],
      head: 0,
      running: false,
      lastUsed: now,
      prev: undefined,
      next: undefined,
    };
    this.byId.set(entityId, slot);
    this.append(slot);
    return slot;
  }

  /** The slots, least recently used first (a copy: safe to remove while iterating). */
  list(): EntitySlot<J>[] {
    const slots: EntitySlot<J>[] = [];
    for (let slot = this.oldest; slot !== undefined; slot = slot.next) slots.push(slot);
    return slots;
  }

  /** Marks the slot as just used: it becomes the most recently used. */
  touch(slot: EntitySlot<J>, now: number): void {
    slot.lastUsed = now;
    if (this.newest === slot) return;
    this.unlink(slot);
    this.append(slot);
  }

  /** Passivates idle slots last used at or before `cutoff`; returns how many. */
  passivateIdle(cutoff: number): number {
    let removed = 0;
    let slot = this.oldest;
    while (slot !== undefined) {
      const next = slot.next;
      if (!isBusy(slot)) {
        // The list is in last-use order, so the first idle slot used after the cutoff ends it.
        if (slot.lastUsed > cutoff) break;
        this.remove(slot);
        removed++;
      }
      slot = next;
    }
    return removed;
  }

  /** Sets the cached size of a slot; one no longer listed (passivated while busy) is not counted. */
  setBytes(slot: EntitySlot<J>, bytes: number): void {
    if (this.byId.get(slot.entityId) === slot) this.bytes += bytes - slot.bytes;
    slot.bytes = bytes;
  }

  /**
   * Passivates least recently used idle slots until at most `max` remain and their cached
   * states take at most `maxBytes`, looking at no more than `budget` slots (busy ones are
   * skipped; the caps may be exceeded while they are busy).
   */
  passivateOverCap(max: number, maxBytes = Infinity, budget = 64): number {
    let removed = 0;
    let slot = this.oldest;
    while (slot !== undefined && (this.byId.size > max || this.bytes > maxBytes) && budget-- > 0) {
      const next = slot.next;
      if (!isBusy(slot)) {
        this.remove(slot);
        removed++;
      }
      slot = next;
    }
    return removed;
  }

  /** Drops a slot's cached state so its next command reloads it (kept in the mailbox order). */
  remove(slot: EntitySlot<J>): void {
    this.byId.delete(slot.entityId);
    this.unlink(slot);
    this.bytes -= slot.bytes;
    slot.bytes = 0;
    slot.state = undefined;
    slot.meta = undefined;
    slot.loaded = false;
    this.passivated++;
  }

  private append(slot: EntitySlot<J>): void {
    slot.prev = this.newest;
    slot.next = undefined;
    if (this.newest) this.newest.next = slot;
    else this.oldest = slot;
    this.newest = slot;
  }

  private unlink(slot: EntitySlot<J>): void {
    if (slot.prev) slot.prev.next = slot.next;
    else if (this.oldest === slot) this.oldest = slot.next;
    if (slot.next) slot.next.prev = slot.prev;
    else if (this.newest === slot) this.newest = slot.prev;
    slot.prev = undefined;
    slot.next = undefined;
  }
}

export function isBusy(slot: EntitySlot<unknown>): boolean {
  return slot.running || slot.head < slot.jobs.length;
}
