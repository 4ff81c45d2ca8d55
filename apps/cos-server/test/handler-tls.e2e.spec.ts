// The built cos-server reaching its handlers over TLS and mTLS with certificates made by the test
// (a throwaway CA): the write handler and a read side's handler are stock grpc-js servers that
// require a client certificate of that CA and record its serial per call. Shown: calls and read
// side deliveries over mTLS, the client certificate rotated on disk taken by new connections
// without a restart, and handlers refused (another CA's certificate, a name that does not
// match) with UNAVAILABLE, a logged reason, and the process still serving.
import { X509Certificate } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueSchemaName, testStoreKinds } from '@chiefofstate/postgres/testing';
import {
  HandleCommandResponseSchema,
  HandleEventResponseSchema,
  HandleReadSideResponseSchema,
  ReadSideHandlerService,
  WriteSideHandlerService,
  type HandleCommandRequest,
  type HandleEventRequest,
  type HandleReadSideRequest,
} from '@chiefofstate/protocol';
import { createTestPki, pollUntil, startGrpcJsServer, type GrpcJsServer, type IssuedCertificate, type TestPki } from '@chiefofstate/testing';
import { command, failure, startCos, type CosFixture } from './support/cos-fixture.js';
import { freePort, startCosServerProcess } from './support/processes.js';

const hasServer = (await testStoreKinds()).includes('postgres');

type Call = grpc.ServerUnaryCall<unknown, unknown>;

/** the serial of the client certificate the call's connection presented */
const clientSerial = (call: Call) => call.getAuthContext().sslPeerCertificate?.serialNumber ?? '';
const serialOf = (issued: IssuedCertificate) => new X509Certificate(issued.cert).serialNumber;

/** grpc-js mTLS: the handler's own certificate, client certificates of `pki` required */
function mtls(pki: TestPki, issued: IssuedCertificate): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(
    Buffer.from(pki.ca),
    [{ cert_chain: Buffer.from(issued.cert), private_key: Buffer.from(issued.key) }],
    true,
  );
}

interface SeenCall {
  method: string;
  entityId: string;
  serial: string;
}

async function startWriteHandler(credentials: grpc.ServerCredentials, seen: SeenCall[]): Promise<GrpcJsServer> {
  return startGrpcJsServer(
    [
      {
        service: WriteSideHandlerService,
        implementation: {
          handleCommand: ((request: HandleCommandRequest, call: Call) => {
            seen.push({ method: 'HandleCommand', entityId: request.priorEventMeta?.entityId ?? '', serial: clientSerial(call) });
            return create(HandleCommandResponseSchema, { events: [request.command!] });
          }) as never,
          handleEvent: ((request: HandleEventRequest, call: Call) => {
            seen.push({ method: 'HandleEvent', entityId: request.eventMeta?.entityId ?? '', serial: clientSerial(call) });
            return create(HandleEventResponseSchema, {
              resultingState: create(AnySchema, { typeUrl: 'type.googleapis.com/cos.test.State', value: new Uint8Array([1]) }),
            });
          }) as never,
        },
      },
    ],
    0,
    credentials,
  );
}

describe.runIf(hasServer)('cos-server to its handlers over TLS', () => {
  const pki = createTestPki('cos-e2e-pki-');
  const stranger = pki.stranger();
  const writeSeen: SeenCall[] = [];
  const readSeen: SeenCall[] = [];
  let clientCert: IssuedCertificate;
  let writeHandler: GrpcJsServer;
  let readHandler: GrpcJsServer;
  let cos: CosFixture;
  const others: { dispose(): Promise<void> }[] = [];

  const tlsEnv = () => ({
    COS_WRITE_SIDE_USE_TLS: 'true',
    COS_WRITE_SIDE_TLS_CA_FILE: pki.caFile,
    COS_WRITE_SIDE_TLS_CERT_FILE: clientCert.certFile,
    COS_WRITE_SIDE_TLS_KEY_FILE: clientCert.keyFile,
    COS_TLS_RELOAD_INTERVAL: '0.2',
  });

  beforeAll(async () => {
    // the write handler is dialled at 127.0.0.1, which its certificate names (an IP SAN);
    // the read side's handler only carries a DNS name, given as tlsServerName
    writeHandler = await startWriteHandler(mtls(pki, pki.issue({ name: 'write-handler', usage: 'server' })), writeSeen);
    readHandler = await startGrpcJsServer(
      [
        {
          service: ReadSideHandlerService,
          implementation: {
            handleReadSide: ((request: HandleReadSideRequest, call: Call) => {
              readSeen.push({ method: 'HandleReadSide', entityId: request.meta?.entityId ?? '', serial: clientSerial(call) });
              return create(HandleReadSideResponseSchema, { successful: true });
            }) as never,
          },
        },
      ],
      0,
      mtls(pki, pki.issue({ name: 'read-handler', dns: ['read-handler.internal'], ips: [], usage: 'server' })),
    );
    clientCert = pki.issue({ name: 'cos-client', usage: 'client' });
    cos = await startCos({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(writeHandler.port),
      ...tlsEnv(),
      COS_READ_SIDE_ENABLED: 'true',
      COS_READ_SIDE_CONFIG__HOST__tls_rs: '127.0.0.1',
      COS_READ_SIDE_CONFIG__PORT__tls_rs: String(readHandler.port),
      COS_READ_SIDE_CONFIG__USE_TLS__tls_rs: 'true',
      COS_READ_SIDE_CONFIG__TLS_CA_FILE__tls_rs: pki.caFile,
      COS_READ_SIDE_CONFIG__TLS_CERT_FILE__tls_rs: clientCert.certFile,
      COS_READ_SIDE_CONFIG__TLS_KEY_FILE__tls_rs: clientCert.keyFile,
      COS_READ_SIDE_CONFIG__TLS_SERVER_NAME__tls_rs: 'read-handler.internal',
    });
  }, 90_000);

  afterAll(async () => {
    await cos?.dispose();
    for (const other of others) await other.dispose();
    await writeHandler?.close();
    await readHandler?.close();
    pki.remove();
    stranger.remove();
  });

  it('processes commands with the write handler over mTLS and delivers their events to the read side over mTLS', async () => {
    const first = serialOf(clientCert);
    const { response } = await cos.send('tls-1', command('Emit'));
    expect(response.meta?.revisionNumber).toBe(1);
    expect(writeSeen.filter((c) => c.entityId === 'tls-1').map((c) => [c.method, c.serial])).toEqual([
      ['HandleCommand', first],
      ['HandleEvent', first],
    ]);
    await pollUntil(() => readSeen.some((c) => c.entityId === 'tls-1'), 20_000, 'the read side received tls-1');
    expect(readSeen.find((c) => c.entityId === 'tls-1')?.serial).toBe(first);
  });

  it('takes a rotated client certificate for new connections without a restart', async () => {
    const before = serialOf(clientCert);
    await cos.send('rotate-0', command('Emit'));
    clientCert = pki.issue({ name: 'cos-client', usage: 'client' });
    const after = serialOf(clientCert);
    expect(after).not.toBe(before);
    let n = 0;
    // the files are polled every 0.2 s; the next call after that connects with the new pair
    await pollUntil(
      async () => {
        await cos.send(`rotate-${++n}`, command('Emit'));
        return writeSeen.at(-1)?.serial === after;
      },
      10_000,
      'the write handler saw the new client certificate',
      100,
    );
    // the read side's files are polled on their own: it may have delivered every event so far
    // before it saw the change, so keep events coming until a delivery uses the new pair
    await pollUntil(
      async () => {
        if (readSeen.at(-1)?.serial === after) return true;
        await cos.send(`rotate-${++n}`, command('Emit'));
        return readSeen.at(-1)?.serial === after;
      },
      20_000,
      'the read side handler saw the new client certificate',
      200,
    );
    await cos.server.waitFor(/write handler: TLS files changed; new connections use them/, 10_000);
    await cos.server.waitFor(/read side tls_rs: TLS files changed; new connections use them/, 10_000);
    // the old connection is gone: no call with the old certificate after the first with the new one
    const firstNew = writeSeen.findIndex((c) => c.serial === after);
    expect(writeSeen.slice(firstNew).every((c) => c.serial === after)).toBe(true);
  });

  async function refusedBy(env: Record<string, string>, reason: RegExp): Promise<void> {
    const other = await startCos({ ...tlsEnv(), ...env }, uniqueSchemaName('e2e_tls'));
    others.push(other);
    for (let i = 0; i < 2; i++) {
      const error = await failure(other.send(`refused-${i}`, command('Emit'), { deadlineMs: 5000 }));
      expect(error.code).toBe(grpc.status.UNAVAILABLE);
    }
    await other.server.waitFor(reason, 5000);
    // still up and serving: a GetState of an unknown entity is answered
    expect(other.server.child.exitCode).toBeNull();
    await expect(other.getState('nobody')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  }

  it("refuses a write handler whose certificate is another CA's, with UNAVAILABLE and the reason logged, and keeps serving", async () => {
    const seen: SeenCall[] = [];
    const foreign = await startWriteHandler(mtls(pki, stranger.issue({ name: 'foreign-handler', usage: 'server' })), seen);
    try {
      await refusedBy(
        { WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1', WRITE_SIDE_HANDLER_SERVICE_PORT: String(foreign.port) },
        /write handler: TLS handshake failed: unable to verify the first certificate/,
      );
      expect(seen).toEqual([]);
    } finally {
      await foreign.close();
    }
  });

  it('refuses a write handler whose certificate does not carry COS_WRITE_SIDE_TLS_SERVER_NAME', async () => {
    const before = writeSeen.length;
    await refusedBy(
      {
        WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
        WRITE_SIDE_HANDLER_SERVICE_PORT: String(writeHandler.port),
        COS_WRITE_SIDE_TLS_SERVER_NAME: 'elsewhere.internal',
      },
      /write handler: TLS handshake failed: Hostname\/IP does not match certificate's altnames/,
    );
    expect(writeSeen.length).toBe(before);
  });

  it('does not start with a TLS file missing, naming the setting', async () => {
    const port = String(writeHandler.port);
    const process = startCosServerProcess({
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: port,
      COS_WRITE_SIDE_USE_TLS: 'true',
      COS_WRITE_SIDE_TLS_CA_FILE: `${pki.dir}/absent.crt`,
      COS_PORT: String(await freePort()),
      COS_METRICS_PORT: String(await freePort()),
      COS_ADDRESS: '127.0.0.1',
    });
    expect(await process.exited).not.toBe(0);
    expect(process.output()).toMatch(/COS_WRITE_SIDE_TLS_\*: cannot use .*absent\.crt/);
  });
});
