import { fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type MessageShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';

/**
 * Stock @grpc/grpc-js peers built from protobuf-es service descriptors, so tests prove the wire
 * against the reference gRPC implementation instead of Connect talking to itself.
 */

type MethodOf<S extends DescService> = S['methods'][number];

/** grpc-js's definition of a protobuf-es service (binary protobuf), for a `grpc.Server` of a test's own. */
export function grpcJsServiceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
      responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
      requestSerialize: (value: MessageShape<DescMessage>) => Buffer.from(toBinary(method.input, value)),
      requestDeserialize: (bytes: Buffer) => fromBinary(method.input, bytes),
      responseSerialize: (value: MessageShape<DescMessage>) => Buffer.from(toBinary(method.output, value)),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
    };
  }
  return definition as grpc.ServiceDefinition;
}

export interface GrpcJsCallOptions {
  metadata?: grpc.Metadata;
  deadline?: Date | number;
  /** cancels the call (CANCELLED) when aborted */
  signal?: AbortSignal;
}

export interface GrpcJsUnaryResult<O> {
  response: O;
  /** response headers */
  metadata: grpc.Metadata;
}

export interface GrpcJsClient {
  readonly raw: grpc.Client;
  /** Calls a unary method by its local name (e.g. `processCommand`); rejects with grpc.ServiceError. */
  unary<M extends DescMethod>(
    method: M,
    request: MessageShape<M['input']>,
    options?: GrpcJsCallOptions,
  ): Promise<GrpcJsUnaryResult<MessageShape<M['output']>>>;
  /**
   * Calls a server-streaming method by its local name (e.g. `subscribeAll`). The stream is
   * grpc-js's own: read it with 'data' / 'end' / 'error' / 'status', or pause() it to apply
   * HTTP/2 flow control to the server.
   */
  serverStream<M extends DescMethod>(
    method: M,
    request: MessageShape<M['input']>,
    options?: GrpcJsCallOptions,
  ): grpc.ClientReadableStream<MessageShape<M['output']>>;
  close(): void;
}

export interface GrpcJsClientOptions {
  service: DescService;
  /** host:port */
  address: string;
  credentials?: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
}

export function createGrpcJsClient(options: GrpcJsClientOptions): GrpcJsClient {
  const Constructor = grpc.makeGenericClientConstructor(grpcJsServiceDefinition(options.service), options.service.name);
  const raw = new Constructor(
    options.address,
    options.credentials ?? grpc.credentials.createInsecure(),
    options.channelOptions,
  );
  /** Starts a call of the method (cancelled when the options' signal aborts). */
  const start = <C extends grpc.ClientUnaryCall | grpc.ClientReadableStream<never>>(
    method: DescMethod,
    request: unknown,
    callOptions: GrpcJsCallOptions,
    ...callback: unknown[]
  ): C => {
    const fn = (raw as unknown as Record<string, (...args: unknown[]) => C>)[method.localName];
    if (typeof fn !== 'function') throw new Error(`no method ${method.localName}`);
    const call = fn.call(
      raw,
      request,
      callOptions.metadata ?? new grpc.Metadata(),
      callOptions.deadline !== undefined ? { deadline: callOptions.deadline } : {},
      ...callback,
    );
    const { signal } = callOptions;
    if (signal?.aborted) call.cancel();
    signal?.addEventListener('abort', () => call.cancel(), { once: true });
    return call;
  };
  return {
    raw,
    unary(method, request, callOptions = {}) {
      return new Promise((resolve, reject) => {
        let headers = new grpc.Metadata();
        const call = start<grpc.ClientUnaryCall>(method, request, callOptions, (error: grpc.ServiceError | null, response: unknown) => {
          if (error) reject(error);
          else resolve({ response: response as never, metadata: headers });
        });
        call.on('metadata', (m: grpc.Metadata) => {
          headers = m;
        });
      });
    },
    serverStream: (method, request, callOptions = {}) => start(method, request, callOptions),
    close: () => raw.close(),
  };
}

/** A unary handler of a grpc-js test server; throw a `GrpcJsStatusError` to answer with a status. */
export type GrpcJsUnaryHandler = (
  request: never,
  call: grpc.ServerUnaryCall<unknown, unknown>,
) => Promise<unknown> | unknown;

export class GrpcJsStatusError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    readonly metadata: grpc.Metadata = new grpc.Metadata(),
  ) {
    super(details);
  }
}

export interface GrpcJsServer {
  readonly server: grpc.Server;
  readonly port: number;
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Serves unary implementations (keyed by method local name) of each service with grpc-js on
 * 127.0.0.1 (port 0 = any free port); plaintext unless `credentials` say otherwise, e.g.
 * `grpc.ServerCredentials.createSsl(ca, [{ cert_chain, private_key }], true)` for mTLS (a
 * handler then sees the client's certificate in `call.getAuthContext().sslPeerCertificate`).
 */
export async function startGrpcJsServer(
  services: ReadonlyArray<{ service: DescService; implementation: Record<string, GrpcJsUnaryHandler> }>,
  port = 0,
  credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure(),
): Promise<GrpcJsServer> {
  const server = new grpc.Server();
  for (const { service, implementation } of services) {
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const method of service.methods as readonly MethodOf<DescService>[]) {
      const impl = implementation[method.localName];
      if (!impl) continue;
      handlers[method.localName] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        Promise.resolve()
          .then(() => impl(call.request as never, call))
          .then(
            (response) => callback(null, response),
            (error: unknown) => {
              if (error instanceof GrpcJsStatusError) {
                callback({ code: error.code, details: error.details, metadata: error.metadata });
              } else {
                callback({ code: grpc.status.INTERNAL, details: String(error) });
              }
            },
          );
      };
    }
    server.addService(grpcJsServiceDefinition(service), handlers);
  }
  const boundPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, credentials, (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  return {
    server,
    port: boundPort,
    address: `127.0.0.1:${boundPort}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      }),
  };
}
