// The benchmark's write handler: a minimal WriteSideHandlerService on a stock @grpc/grpc-js server,
// run as its own process. HandleCommand answers events = [command]; HandleEvent answers a small
// state (the event's revision as 4 bytes). Prints `listening <port>` once bound. With
// HANDLER_HTTP=1 the same handler also speaks the HTTP handler protocol (JSON, Any as base64) on
// a plain node:http server: `http-listening <port>`.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import {
  HandleCommandRequestSchema,
  HandleCommandResponseSchema,
  HandleEventRequestSchema,
  HandleEventResponseSchema,
  WriteSideHandlerService,
} from '@chiefofstate/protocol';

const STATE_TYPE_URL = 'type.googleapis.com/bench.v1.Counter';

function unary<I, O>(path: string, decode: (bytes: Buffer) => I, encode: (value: O) => Buffer): grpc.MethodDefinition<I, O> {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: () => {
      throw new Error('server side only');
    },
    requestDeserialize: decode,
    responseSerialize: encode,
    responseDeserialize: () => {
      throw new Error('server side only');
    },
  };
}

const prefix = `/${WriteSideHandlerService.typeName}/`;
const definition: grpc.ServiceDefinition = {
  handleCommand: unary(
    `${prefix}HandleCommand`,
    (bytes) => fromBinary(HandleCommandRequestSchema, bytes),
    (value: ReturnType<typeof create<typeof HandleCommandResponseSchema>>) =>
      Buffer.from(toBinary(HandleCommandResponseSchema, value)),
  ),
  handleEvent: unary(
    `${prefix}HandleEvent`,
    (bytes) => fromBinary(HandleEventRequestSchema, bytes),
    (value: ReturnType<typeof create<typeof HandleEventResponseSchema>>) =>
      Buffer.from(toBinary(HandleEventResponseSchema, value)),
  ),
};

const server = new grpc.Server();
server.addService(definition, {
  handleCommand(
    call: grpc.ServerUnaryCall<ReturnType<typeof fromBinary<typeof HandleCommandRequestSchema>>, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) {
    const { command } = call.request;
    callback(null, create(HandleCommandResponseSchema, { events: command ? [command] : [] }));
  },
  handleEvent(
    call: grpc.ServerUnaryCall<ReturnType<typeof fromBinary<typeof HandleEventRequestSchema>>, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) {
    const revision = call.request.eventMeta?.revisionNumber ?? 0;
    const value = new Uint8Array(4);
    new DataView(value.buffer).setUint32(0, revision);
    callback(null, create(HandleEventResponseSchema, { resultingState: create(AnySchema, { typeUrl: STATE_TYPE_URL, value }) }));
  },
});
server.bindAsync(`127.0.0.1:${process.env['PORT'] ?? '0'}`, grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`listening ${port}\n`);
  // --tls-cost: the same service on a second port, over TLS
  const certFile = process.env['HANDLER_TLS_CERT_FILE'];
  const keyFile = process.env['HANDLER_TLS_KEY_FILE'];
  if (certFile === undefined || keyFile === undefined) return;
  const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(certFile), private_key: readFileSync(keyFile) }]);
  server.bindAsync('127.0.0.1:0', credentials, (tlsError, tlsPort) => {
    if (tlsError) {
      process.stderr.write(`${tlsError.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`tls-listening ${tlsPort}\n`);
  });
});
/** HTTP: the same answers, as JSON */
function stateOf(revision: number): string {
  const value = new Uint8Array(4);
  new DataView(value.buffer).setUint32(0, revision);
  return Buffer.from(toBinary(AnySchema, create(AnySchema, { typeUrl: STATE_TYPE_URL, value }))).toString('base64');
}
if (process.env['HANDLER_HTTP'] === '1') {
  const http = createHttpServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
      const answer =
        request.url === '/v1/writeside/handleCommand'
          ? { events: body['command'] === undefined ? [] : [body['command']] }
          : { resulting_state: stateOf(Number((body['event_meta'] as { revision_number?: number } | undefined)?.revision_number ?? 0)) };
      const text = JSON.stringify(answer);
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
    });
  });
  http.keepAliveTimeout = 60_000;
  http.listen(0, '127.0.0.1', () => {
    const address = http.address();
    process.stdout.write(`http-listening ${typeof address === 'object' && address ? address.port : 0}\n`);
  });
}

const stop = () => server.tryShutdown(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
