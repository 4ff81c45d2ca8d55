// A read-side handler for the end-to-end tests, in its own process: a stock @grpc/grpc-js
// ReadSideHandlerService that writes one JSON line per call to stdout and answers as the rules
// file (RULES_FILE, re-read on every call) says. Prints `listening <port>` when ready.
import { readFileSync } from 'node:fs';
import { create } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import { HandleReadSideResponseSchema, ReadSideHandlerService, type HandleReadSideRequest } from '@chiefofstate/protocol';
import { GrpcJsStatusError, startGrpcJsServer } from '@chiefofstate/testing';

/** One line per call. */
export interface HandlerCall {
  /** read_side_id */
  r: string;
  /** meta.entity_id */
  e: string;
  /** meta.revision_number */
  v: number;
  /** the event's bytes as text (`<entity>@<revision>`) */
  ev: string;
  /** the resulting state's bytes as text */
  st: string;
  /** x-cos-entity-id */
  h: string | null;
  /** x-cos-event-tag */
  t: string | null;
  /** what the handler answered */
  a: Answer;
}

export type Answer = 'ok' | 'unsuccessful' | 'error' | 'slow';

/** A rule: calls matching every given field get `answer` (the first matching rule wins). */
export interface Rule {
  readSideId?: string;
  entityId?: string;
  revision?: number;
  answer: Answer;
}

const rulesFile = process.env['RULES_FILE'];
const decoder = new TextDecoder();

function answerFor(call: Omit<HandlerCall, 'a'>): Answer {
  if (!rulesFile) return 'ok';
  let rules: Rule[] = [];
  try {
    rules = JSON.parse(readFileSync(rulesFile, 'utf8')) as Rule[];
  } catch {
    // no file yet: every call succeeds
  }
  const rule = rules.find(
    (r) =>
      (r.readSideId === undefined || r.readSideId === call.r) &&
      (r.entityId === undefined || r.entityId === call.e) &&
      (r.revision === undefined || r.revision === call.v),
  );
  return rule?.answer ?? 'ok';
}

const server = await startGrpcJsServer(
  [
    {
      service: ReadSideHandlerService,
      implementation: {
        handleReadSide: async (request: HandleReadSideRequest, call: grpc.ServerUnaryCall<unknown, unknown>) => {
          const header = (name: string) => {
            const value = call.metadata.get(name)[0];
            return value === undefined ? null : String(value);
          };
          const seen = {
            r: request.readSideId,
            e: request.meta?.entityId ?? '',
            v: request.meta?.revisionNumber ?? 0,
            ev: decoder.decode(request.event?.value ?? new Uint8Array()),
            st: decoder.decode(request.state?.value ?? new Uint8Array()),
            h: header('x-cos-entity-id'),
            t: header('x-cos-event-tag'),
          };
          const answer = answerFor(seen);
          process.stdout.write(`${JSON.stringify({ ...seen, a: answer } satisfies HandlerCall)}\n`);
          if (answer === 'slow') await new Promise((resolve) => setTimeout(resolve, 60_000));
          if (answer === 'error') throw new GrpcJsStatusError(13, `cannot project ${seen.ev}`);
          return create(HandleReadSideResponseSchema, { successful: answer === 'ok' });
        },
      },
    },
  ],
  Number(process.env['PORT'] ?? 0),
);
process.stdout.write(`listening ${server.port}\n`);
process.once('SIGTERM', () => {
  server.server.forceShutdown();
  process.exit(0);
});
