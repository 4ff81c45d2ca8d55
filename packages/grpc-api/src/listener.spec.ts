import { request as http1Request } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startListener, type Listener } from './listener.js';

describe('one cleartext port for HTTP/1.1 and HTTP/2', () => {
  let listener: Listener;
  beforeAll(async () => {
    listener = await startListener({
      host: '127.0.0.1',
      port: 0,
      http2: {},
      maxHeaderBytes: 16 * 1024,
      receiveTimeoutMs: 300,
      idleTimeoutMs: 60_000,
      onRequest: (request, response) => {
        request.resume();
        response.writeHead(200, { 'content-type': 'text/plain' });
        response.end(`HTTP/${request.httpVersion} ${request.method} ${request.url}`);
      },
    });
  });
  afterAll(() => listener.close(100));

  it('answers HTTP/1.1 (a browser, curl) and HTTP/2 with prior knowledge (gRPC clients) on the same port', async () => {
    const viaHttp1 = await new Promise<string>((resolve, reject) => {
      http1Request({ host: '127.0.0.1', port: listener.port, path: '/one', method: 'POST' }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve(body));
      })
        .on('error', reject)
        .end('x');
    });
    expect(viaHttp1).toBe('HTTP/1.1 POST /one');
    const session = http2Connect(`http://127.0.0.1:${listener.port}`);
    try {
      const stream = session.request({ ':path': '/two' });
      let body = '';
      for await (const chunk of stream) body += (chunk as Buffer).toString();
      expect(body).toBe('HTTP/2.0 GET /two');
    } finally {
      session.close();
    }
    expect(await (await fetch(`http://127.0.0.1:${listener.port}/three`)).text()).toBe('HTTP/1.1 GET /three');
  });

  it.each([
    ['says nothing', ''],
    ['sends too little to tell the protocol', 'P'],
  ])('cuts a connection that %s within the receive timeout', async (_what, bytes) => {
    const socket = tcpConnect(listener.port, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    if (bytes !== '') socket.write(bytes);
    const started = Date.now();
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // closed by the server, after the timeout and well before the test's own
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });
});
