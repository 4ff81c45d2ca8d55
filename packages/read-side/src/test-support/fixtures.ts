import { create } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import {
  HandleReadSideResponseSchema,
  ReadSideHandlerService,
  type HandleReadSideRequest,
} from '@chiefofstate/protocol';
import { journalMigrations } from '@chiefofstate/journal';
import { leaseMigrations } from '@chiefofstate/leases';
import { offsetStoreMigrations } from '@chiefofstate/offset-store';
import { mergeMigrations, type MigrationSet } from '@chiefofstate/postgres';
import { GrpcJsStatusError, startGrpcJsServer, type GrpcJsServer } from '@chiefofstate/testing';

export { eventPayload } from '@chiefofstate/testing';

/** The engine's tables: the journal, offsets and stream leases (readSideMigrations of @chiefofstate/composition, plus the journal). */
export const engineTestMigrations: MigrationSet = mergeMigrations(journalMigrations, offsetStoreMigrations, leaseMigrations);

const untext = new TextDecoder();


/** What the handler received in one call. */
export interface Received {
  readonly readSideId: string;
  readonly entityId: string;
  readonly revision: number;
  /** `${entityId}@${revision}` from the event's bytes */
  readonly event: string;
  readonly state: string;
  readonly headerEntityId: string | undefined;
  readonly headerTag: string | undefined;
}

export type Reply = 'ok' | 'unsuccessful' | 'error' | { delayMs: number; then?: 'ok' | 'unsuccessful' | 'error' };

/**
 * A stock grpc-js ReadSideHandlerService recording every call; `reply` decides the answer
 * (default: successful) and may be changed while it runs.
 */
export async function startRecordingHandler(): Promise<{
  server: GrpcJsServer;
  calls: Received[];
  /** calls that were answered successful=true */
  accepted: Received[];
  setReply(reply: (call: Received) => Reply): void;
  close(): Promise<void>;
}> {
  const calls: Received[] = [];
  const accepted: Received[] = [];
  let reply: (call: Received) => Reply = () => 'ok';
  const server = await startGrpcJsServer([
    {
      service: ReadSideHandlerService,
      implementation: {
        handleReadSide: async (request: HandleReadSideRequest, call: grpc.ServerUnaryCall<unknown, unknown>) => {
          const header = (name: string) => {
            const value = call.metadata.get(name)[0];
            return value === undefined ? undefined : String(value);
          };
          const received: Received = {
            readSideId: request.readSideId,
            entityId: request.meta?.entityId ?? '',
            revision: request.meta?.revisionNumber ?? 0,
            event: untext.decode(request.event?.value ?? new Uint8Array()),
            state: untext.decode(request.state?.value ?? new Uint8Array()),
            headerEntityId: header('x-cos-entity-id'),
            headerTag: header('x-cos-event-tag'),
          };
          calls.push(received);
          let answer = reply(received);
          if (typeof answer === 'object') {
            const { delayMs, then = 'ok' } = answer;
            await new Promise((resolve) => setTimeout(resolve, delayMs));
            answer = then;
          }
          if (answer === 'error') throw new GrpcJsStatusError(13, `cannot project ${received.event}`);
          if (answer === 'unsuccessful') return create(HandleReadSideResponseSchema, { successful: false });
          accepted.push(received);
          return create(HandleReadSideResponseSchema, { successful: true });
        },
      },
    },
  ]);
  return {
    server,
    calls,
    accepted,
    setReply: (next) => (reply = next),
    close: () => server.close(),
  };
}

/** Waits until `condition()` holds, polling. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Per entity, the revisions in the order they arrived. */
export function revisionsByEntity(received: readonly Received[], readSideId?: string): Map<string, number[]> {
  const map = new Map<string, number[]>();
  for (const call of received) {
    if (readSideId !== undefined && call.readSideId !== readSideId) continue;
    const list = map.get(call.entityId) ?? [];
    list.push(call.revision);
    map.set(call.entityId, list);
  }
  return map;
}

/** Whether every entity's revisions arrived as 1, 2, 3, ... (repeats allowed, never backwards past a gap). */
export function inOrderAtLeastOnce(revisions: readonly number[], last: number): boolean {
  // at-least-once: a redelivery restarts from an earlier revision, but never skips one
  let expectedMax = 0;
  for (const revision of revisions) {
    if (revision > expectedMax + 1) return false;
    expectedMax = Math.max(expectedMax, revision);
  }
  return expectedMax === last;
}
