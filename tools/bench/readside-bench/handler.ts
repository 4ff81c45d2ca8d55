// The minimal read-side handler of the read-side benchmark, in its own process: a stock
// @grpc/grpc-js ReadSideHandlerService that answers successful=true at once and counts calls.
// Prints `listening <port>`; prints `calls <n>` on each `count` line read from stdin.
import { create } from '@bufbuild/protobuf';
import { HandleReadSideResponseSchema, ReadSideHandlerService } from '@chiefofstate/protocol';
import { startGrpcJsServer } from '@chiefofstate/testing';

let calls = 0;
const ok = create(HandleReadSideResponseSchema, { successful: true });
const server = await startGrpcJsServer([
  {
    service: ReadSideHandlerService,
    implementation: {
      handleReadSide: () => {
        calls++;
        return ok;
      },
    },
  },
]);
process.stdout.write(`listening ${server.port}\n`);
process.stdin.setEncoding('utf8').on('data', (chunk: string) => {
  for (const line of chunk.split('\n')) if (line.trim() === 'count') process.stdout.write(`calls ${calls}\n`);
});
process.stdin.on('end', () => process.exit(0));
