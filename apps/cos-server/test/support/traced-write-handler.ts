// A write handler that uses OpenTelemetry itself (Connect with COS's server tracing interceptor, and @chiefofstate/tracing), as its own
// process, exporting its spans over OTLP/HTTP to TRACES_ENDPOINT: one trace must run from the
// caller through COS into this handler.
import { createServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { WriteSideHandlerService } from '@chiefofstate/protocol';
import { createServerTracingInterceptor } from '@chiefofstate/grpc-api';
import { createTracing } from '@chiefofstate/tracing';

const tracing = createTracing({ serviceName: 'traced-handler', tracesEndpoint: process.env['TRACES_ENDPOINT'] });
const state = create(AnySchema, { typeUrl: 'type.googleapis.com/cos.test.State', value: new TextEncoder().encode('{}') });
const server = createServer(
  connectNodeAdapter({
    interceptors: [createServerTracingInterceptor()],
    routes: (router) =>
      router.service(WriteSideHandlerService, {
        handleCommand: (request) => ({ events: request.command ? [request.command] : [] }),
        handleEvent: () => ({ resultingState: state }),
      }),
  }),
);
server.listen(Number(process.env['PORT'] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  void tracing.shutdown().then(() => process.exit(0));
});
