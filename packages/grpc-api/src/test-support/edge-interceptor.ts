import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';

/**
 * The interceptor the stream specs put on both servers they compare: sets a header and a trailer
 * on every call, and refuses callers that send `x-refuse`.
 */
export const edgeInterceptor: Interceptor = (next) => async (request) => {
  if (request.header.get('x-refuse') !== null) throw new ConnectError('not you', Code.PermissionDenied);
  const response = await next(request);
  response.header.set('x-served-by', 'edge');
  response.trailer.set('x-trailer', 'done');
  return response;
};
