import type { DescMessage, MessageShape } from '@bufbuild/protobuf';
import { ConnectError, type HandlerContext, type Interceptor, type StreamRequest, type StreamResponse } from '@connectrpc/connect';
import { interceptedRequest, type HttpResponse, type StreamRoute } from './unary-call.js';

/*
 * What the server-streaming paths of the edge share (server-stream-grpc.ts, server-stream-connect.ts):
 * the interceptors around the call, writing with flow control, and how the stream ended.
 */

/**
 * Runs the interceptors around a server-streaming call as Connect does. Resolves with undefined
 * when the messages are the implementation's own (the caller may then take its encoded form),
 * with the messages otherwise (an interceptor replaced them); rejects with what refused the call.
 */
export async function interceptStream(
  interceptors: readonly Interceptor[],
  route: StreamRoute,
  input: MessageShape<DescMessage>,
  context: HandlerContext,
): Promise<AsyncIterable<MessageShape<DescMessage>> | undefined> {
  if (interceptors.length === 0) return undefined;
  const { method } = route;
  const own: AsyncIterable<MessageShape<DescMessage>> = { [Symbol.asyncIterator]: () => route.impl(input, context)[Symbol.asyncIterator]() };
  const next = async (): Promise<StreamResponse> => ({
    stream: true,
    service: method.parent,
    method,
    get header() {
      return context.responseHeader;
    },
    get trailer() {
      return context.responseTrailer;
    },
    message: own,
  });
  let chain = next as (request: StreamRequest) => Promise<StreamResponse>;
  for (let i = interceptors.length - 1; i >= 0; i--) chain = interceptors[i]!(chain as never) as typeof chain;
  const response = await chain({
    ...interceptedRequest(context),
    stream: true,
    method,
    message: (async function* () {
      yield input;
    })(),
  });
  return response.message === own ? undefined : (response.message as AsyncIterable<MessageShape<DescMessage>>);
}

/** Writes each chunk, waiting for the response to drain when it is full; stops when it is gone. */
export async function writeChunks(response: HttpResponse, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const chunk of chunks) {
    if (isGone(response)) return;
    if (!(response as { write(chunk: Uint8Array): boolean }).write(chunk)) await drained(response);
  }
}

/** The caller went away (HTTP/2: its stream; HTTP/1.1: the connection). */
export function isGone(response: HttpResponse): boolean {
  return 'stream' in response ? response.stream.destroyed : response.destroyed;
}

/**
 * How a stream ended: what failed it, else the reason of its signal when that is a ConnectError
 * (the deadline), else undefined (OK).
 */
export function streamOutcome(failure: unknown, context: HandlerContext): unknown {
  const reason: unknown = context.signal.reason;
  if (failure === undefined && context.signal.aborted && reason instanceof ConnectError) return reason;
  return failure;
}

/** Resolves when the response can take more, or is gone. */
function drained(response: HttpResponse): Promise<void> {
  if (isGone(response)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      response.off('drain', done);
      response.off('close', done);
      resolve();
    };
    response.on('drain', done);
    response.on('close', done);
  });
}
