import { create } from '@bufbuild/protobuf';
import { HandlerUnavailableError } from '@chiefofstate/core';
import { HandleCommandRequestSchema, WriteSideHandlerService, emptyState } from '@chiefofstate/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGrpcServer, type TestGrpcServer } from '@chiefofstate/testing';
import { selfSignedCertificate } from './test-support/self-signed.js';
import { createWriteSideClient } from './write-side-client.js';

describe('WriteSideClient over TLS', () => {
  let server: TestGrpcServer;
  let cert: string;

  beforeAll(async () => {
    const tls = selfSignedCertificate();
    cert = tls.cert;
    server = await startTestGrpcServer(
      (router) =>
        router.service(WriteSideHandlerService, {
          handleCommand: (request) => ({ events: [request.command!] }),
          handleEvent: (request) => ({ resultingState: request.event }),
        }),
      0,
      tls,
    );
  });
  afterAll(async () => {
    await server.stop();
  });

  const request = create(HandleCommandRequestSchema, { command: emptyState() });

  it('calls a TLS handler when useTls is set and the CA is trusted', async () => {
    const client = createWriteSideClient({ host: '127.0.0.1', port: server.port, useTls: true, tls: { ca: cert } });
    try {
      const response = await client.handleCommand(request);
      expect(response.events[0]?.typeUrl).toBe('type.googleapis.com/google.protobuf.Empty');
    } finally {
      await client.close();
    }
  });

  it('refuses an untrusted certificate, and plaintext to a TLS port', async () => {
    const untrusted = createWriteSideClient({ host: '127.0.0.1', port: server.port, useTls: true });
    const plaintext = createWriteSideClient({ host: '127.0.0.1', port: server.port, timeoutMs: 1000 });
    try {
      await expect(untrusted.handleCommand(request)).rejects.toBeInstanceOf(HandlerUnavailableError);
      await expect(plaintext.handleCommand(request)).rejects.toBeInstanceOf(HandlerUnavailableError);
    } finally {
      await untrusted.close();
      await plaintext.close();
    }
  });
});
