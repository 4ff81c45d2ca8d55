import * as http2 from 'node:http2';
import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { ChiefOfStateService, GetStateRequestSchema, MetaDataSchema } from '@chiefofstate/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@chiefofstate/core';
import { createChiefOfStateService } from './chief-of-state-service.js';
import { startGrpcServer, type GrpcServer } from './grpc-server.js';

const RECEIVE_TIMEOUT_MS = 300;
const GET_STATE = '/chief_of_state.v1.ChiefOfStateService/GetState';

interface Answer {
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders;
  readonly body: string;
  readonly ms: number;
}

/** Sends headers and `body`, then waits for the answer without ending the request (bounded). */
function sendAndStall(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<Answer> {
  const startedAt = performance.now();
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': GET_STATE, ...headers }, { endStream: false });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let text = '';
    const bound = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
    stream.on('response', (h) => (responseHeaders = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    stream.on('error', () => {});
    stream.on('close', () => {
      clearTimeout(bound);
      resolve({ headers: responseHeaders, trailers, body: text, ms: performance.now() - startedAt });
    });
    stream.write(body);
  });
}

describe('COS_GRPC_RECEIVE_TIMEOUT', () => {
  let server: GrpcServer;
  let session: http2.ClientHttp2Session;
  const logged: string[] = [];
  const message = toBinary(GetStateRequestSchema, create(GetStateRequestSchema, { entityId: 'acc-1' }));

  beforeAll(async () => {
    server = await startGrpcServer({
      host: '127.0.0.1',
      port: 0,
      maxMessageBytes: 64 * 1024,
      receiveTimeoutMs: RECEIVE_TIMEOUT_MS,
      logger: {
        ...silentLogger,
        debug: (fields, message) => logged.push(`${message} ${(fields as { path: string }).path}`),
        warn: (_fields, message) => logged.push(message ?? ''),
      },
      routes: (router) =>
        router.service(
          ChiefOfStateService,
          createChiefOfStateService({
            processor: {
              processCommand: () => Promise.reject(new Error('not used')),
              getState: async (entityId) => ({ state: create(AnySchema), meta: create(MetaDataSchema, { entityId }) }),
            },
            headers: { propagated: [], persisted: [] },
            commandTimeoutMs: 5000,
          }),
        ),
    });
    session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on('error', () => {});
  });
  afterAll(async () => {
    session.destroy();
    await server.close(100);
  });

  it('answers a gRPC call whose body stalls with DEADLINE_EXCEEDED, on the unary path and the Connect path', async () => {
    const prefix = Buffer.from([0, 0, 0, 0, message.byteLength]);
    for (const headers of [
      { 'content-type': 'application/grpc', te: 'trailers' },
      { 'content-type': 'application/grpc-web+proto' },
    ]) {
      const answer = await sendAndStall(session, headers, prefix);
      expect({ ...answer.headers, ...answer.trailers }['grpc-status'], headers['content-type']).toBe('4');
      expect(answer.ms).toBeGreaterThanOrEqual(RECEIVE_TIMEOUT_MS - 5);
    }
    expect(logged).toEqual([`request not received in time ${GET_STATE}`, `request not received in time ${GET_STATE}`]);
  });

  it('answers a Connect-protocol call whose body stalls with 408 and deadline_exceeded', async () => {
    const answer = await sendAndStall(session, { 'content-type': 'application/proto' }, message.subarray(0, 2));
    expect(answer.headers[':status']).toBe(408);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'deadline_exceeded' });
  });

  it('leaves calls whose body arrives alone, and keeps serving', async () => {
    const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, message.byteLength]), message]);
    const answer = await new Promise<http2.IncomingHttpHeaders>((resolve) => {
      const stream = session.request({ ':method': 'POST', ':path': GET_STATE, 'content-type': 'application/grpc', te: 'trailers' });
      stream.on('trailers', resolve);
      stream.on('data', () => {});
      stream.end(framed);
    });
    expect(answer['grpc-status']).toBe('0');
  });
});
