// The benchmark's write handler: a minimal WriteSideHandlerService on a stock @grpc/grpc-js server,
// run as its own process. HandleCommand answers events = [command]; HandleEvent answers a small
// state (the event's revision as 4 bytes). Prints `listening <port>` once bound.
import { readFileSync } from 'node:fs';
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
const stop = () => server.tryShutdown(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
