import { createServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema, TimestampSchema, anyUnpack } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { connectNodeAdapter, createGrpcTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import {
  ChiefOfStateService,
  HandleCommandResponseSchema,
  HeaderSchema,
  MetaDataSchema,
  ProcessCommandRequestSchema,
  WriteSideHandlerService,
  file_chief_of_state_v1_common,
  packAny,
} from '@chiefofstate/protocol';
import { createRegistry } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGrpcJsClient, GrpcJsStatusError, startGrpcJsServer, type GrpcJsServer } from './grpc-js.js';
import { decodeRpcStatus, encodeRpcStatus } from './rpc-status.js';

const registry = createRegistry(file_chief_of_state_v1_common);
// Buffers and Uint8Arrays of equal bytes compare equal this way.
const bytes = (value: Uint8Array | undefined) => (value === undefined ? undefined : Array.from(value));
const detail = create(HeaderSchema, { key: 'reason', value: { case: 'bytesValue', value: new Uint8Array([0, 1, 254, 255]) } });
const revisionDate = create(TimestampSchema, { seconds: 1_700_000_000n, nanos: 123_000_000 });

describe('Connect (connect-node) server called by a stock @grpc/grpc-js client', () => {
  let server: Http2Server;
  let address: string;

  beforeAll(async () => {
    const handler = connectNodeAdapter({
      routes: (router) =>
        router.service(ChiefOfStateService, {
          processCommand(request) {
            if (request.entityId === 'refuse') {
              throw new ConnectError('insufficient funds', Code.FailedPrecondition, undefined, [
                { desc: HeaderSchema, value: detail },
                { desc: TimestampSchema, value: revisionDate },
              ]);
            }
            // echo the command back as the state, to check the Any round trip byte for byte
            return {
              state: request.command,
              meta: { entityId: request.entityId, revisionNumber: 7, revisionDate },
            };
          },
          getState() {
            throw new ConnectError('', Code.NotFound);
          },
        }),
    });
    server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('round-trips a google.protobuf.Any and a MetaData', async () => {
    const client = createGrpcJsClient({ service: ChiefOfStateService, address });
    try {
      const command = packAny(MetaDataSchema, create(MetaDataSchema, { entityId: 'inner', revisionNumber: 3 }));
      const { response } = await client.unary(
        ChiefOfStateService.method.processCommand,
        create(ProcessCommandRequestSchema, { entityId: 'acc-1', command }),
      );
      expect(response.state?.typeUrl).toBe('type.googleapis.com/chief_of_state.v1.MetaData');
      expect(bytes(response.state?.value)).toEqual(bytes(command.value));
      expect(anyUnpack(response.state!, registry)).toMatchObject({ entityId: 'inner', revisionNumber: 3 });
      expect(response.meta?.entityId).toBe('acc-1');
      expect(response.meta?.revisionNumber).toBe(7);
      expect(response.meta?.revisionDate).toMatchObject({ seconds: 1_700_000_000n, nanos: 123_000_000 });
    } finally {
      client.close();
    }
  });

  it('delivers status code, message and rich details (grpc-status-details-bin) intact', async () => {
    const client = createGrpcJsClient({ service: ChiefOfStateService, address });
    try {
      const error = (await client
        .unary(ChiefOfStateService.method.processCommand, create(ProcessCommandRequestSchema, { entityId: 'refuse' }))
        .catch((e: unknown) => e)) as grpc.ServiceError;
      expect(error.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(error.details).toBe('insufficient funds');
      const raw = error.metadata.get('grpc-status-details-bin')[0] as Buffer;
      const status = decodeRpcStatus(raw);
      expect(status.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(status.message).toBe('insufficient funds');
      expect(status.details.map((d) => d.typeUrl)).toEqual([
        'type.googleapis.com/chief_of_state.v1.Header',
        'type.googleapis.com/google.protobuf.Timestamp',
      ]);
      const header = fromBinary(HeaderSchema, status.details[0]!.value);
      expect(header.key).toBe('reason');
      expect(header.value.case).toBe('bytesValue');
      expect(bytes(header.value.value as Uint8Array)).toEqual([0, 1, 254, 255]);
      expect(fromBinary(TimestampSchema, status.details[1]!.value).seconds).toBe(1_700_000_000n);
    } finally {
      client.close();
    }
  });
});

describe('stock @grpc/grpc-js server called by a Connect gRPC transport', () => {
  let server: GrpcJsServer;
  const statusDetails = encodeRpcStatus({
    code: grpc.status.ABORTED,
    message: 'account frozen',
    details: [{ typeUrl: 'type.googleapis.com/chief_of_state.v1.Header', value: toBinary(HeaderSchema, detail) }],
  });

  beforeAll(async () => {
    server = await startGrpcJsServer([
      {
        service: WriteSideHandlerService,
        implementation: {
          handleCommand: (request: { command?: { typeUrl: string } }) => {
            if (request.command?.typeUrl.endsWith('Refuse')) {
              const metadata = new grpc.Metadata();
              metadata.set('grpc-status-details-bin', Buffer.from(statusDetails));
              throw new GrpcJsStatusError(grpc.status.ABORTED, 'account frozen', metadata);
            }
            return create(HandleCommandResponseSchema, {
              events: [request.command as never, create(AnySchema, { typeUrl: 'type.googleapis.com/x.Y', value: new Uint8Array([9]) })],
            });
          },
        },
      },
    ]);
  });

  afterAll(async () => {
    await server.close();
  });

  const client = () =>
    createClient(WriteSideHandlerService, createGrpcTransport({ baseUrl: `http://${server.address}` }));

  it('round-trips repeated google.protobuf.Any', async () => {
    const command = create(AnySchema, { typeUrl: 'type.googleapis.com/bank.Deposit', value: new Uint8Array([1, 2, 3]) });
    const response = await client().handleCommand({ command });
    expect(response.events).toHaveLength(2);
    expect(response.events[0]?.typeUrl).toBe('type.googleapis.com/bank.Deposit');
    expect(bytes(response.events[0]?.value)).toEqual([1, 2, 3]);
    expect(bytes(response.events[1]?.value)).toEqual([9]);
  });

  it('receives status code, message and rich details intact', async () => {
    const error = await client()
      .handleCommand({ command: { typeUrl: 'type.googleapis.com/bank.Refuse', value: new Uint8Array() } })
      .then(
        () => {
          throw new Error('expected the call to fail');
        },
        (e: unknown) => ConnectError.from(e),
      );
    expect(error.code).toBe(Code.Aborted);
    expect(error.rawMessage).toBe('account frozen');
    expect(error.findDetails(HeaderSchema)).toHaveLength(1);
    expect(error.findDetails(HeaderSchema)[0]).toMatchObject({ key: 'reason' });
    const raw = error.details[0] as { type: string; value: Uint8Array };
    expect(raw.type).toBe('chief_of_state.v1.Header');
    expect(bytes(raw.value)).toEqual(bytes(toBinary(HeaderSchema, detail)));
  });
});

describe('google.rpc.Status codec', () => {
  it('round-trips', () => {
    const status = { code: 5, message: 'nope', details: [{ typeUrl: 'a/b.C', value: new Uint8Array([1]) }] };
    expect(decodeRpcStatus(encodeRpcStatus(status))).toEqual(status);
  });
});
