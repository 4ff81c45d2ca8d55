import { create, isMessage, type DescMessage, type DescMethodUnary, type MessageShape } from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  createContextValues,
  type Interceptor,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from '@connectrpc/connect';

/** what callers pass as request metadata (Connect's HeadersInit) */
export type HeaderInput = Headers | Record<string, string> | ReadonlyArray<readonly [string, string]>;

/** Sends one unary call's message; the transport's own work. */
export type UnarySend = (
  method: DescMethodUnary,
  message: MessageShape<DescMessage>,
  header: HeaderInput | undefined,
  signal: AbortSignal,
  timeoutMs: number | undefined,
) => Promise<UnaryResponse>;

type AnyUnary = (request: UnaryRequest) => Promise<UnaryResponse>;

export const NEVER_ABORTED: AbortSignal = new AbortController().signal;

/**
 * A Connect `Transport['unary']` over `send`: the message created from its init shape, the
 * deadline (none for <= 0), and the interceptors around the call when there are any (a
 * UnaryRequest is built only then, so a call without interceptors costs no Headers object).
 */
export function createUnary(baseUrl: string, interceptors: readonly Interceptor[], send: UnarySend): Transport['unary'] {
  return async (method, signal, timeoutMs, header, input, contextValues) => {
    const message = isMessage(input, method.input) ? input : create(method.input, input);
    const deadline = timeoutMs === undefined || timeoutMs <= 0 ? undefined : timeoutMs;
    if (interceptors.length === 0) {
      return (await send(method, message, header as HeaderInput | undefined, signal ?? NEVER_ABORTED, deadline)) as never;
    }
    const request: UnaryRequest = {
      stream: false,
      service: method.parent,
      method,
      requestMethod: 'POST',
      url: `${baseUrl}/${method.parent.typeName}/${method.name}`,
      signal: signal ?? NEVER_ABORTED,
      header: new Headers(header as HeaderInput | undefined as never),
      contextValues: contextValues ?? createContextValues(),
      message,
    } as UnaryRequest;
    const next: AnyUnary = (req) => send(req.method, req.message, req.header, req.signal, deadline);
    let chain = next;
    for (let i = interceptors.length - 1; i >= 0; i--) chain = interceptors[i]!(chain as never) as AnyUnary;
    return (await chain(request)) as never;
  };
}

/** Copies request metadata into outgoing headers, lower-cased, skipping `skip` (pseudo and protocol headers). */
export function copyHeaders(from: HeaderInput, to: Record<string, string | string[] | number | undefined>, skip: ReadonlySet<string>): void {
  const put = (name: string, value: string) => {
    const key = name.toLowerCase();
    if (key.startsWith(':') || skip.has(key)) return;
    const existing = to[key];
    to[key] = existing === undefined ? value : `${String(existing)}, ${value}`;
  };
  if (from instanceof Headers) from.forEach((value, name) => put(name, value));
  else if (Array.isArray(from)) for (const [name, value] of from as ReadonlyArray<readonly [string, string]>) put(name, value);
  else for (const name of Object.keys(from)) put(name, (from as Record<string, string>)[name]!);
}

/** Why a call must not start: its transport closed, or its caller already gave up. */
export function callRefusal(closed: boolean, signal: AbortSignal): ConnectError | undefined {
  if (closed) return new ConnectError('transport closed', Code.Unavailable);
  if (signal.aborted) return new ConnectError('call aborted', Code.Canceled, undefined, undefined, signal.reason);
  return undefined;
}
