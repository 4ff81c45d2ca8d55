import { gzipSync } from 'node:zlib';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { afterEach, describe, expect, it } from 'vitest';
import { spanAttribute, startOtlpReceiver, type OtlpReceiver } from './otlp-receiver.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const PARENT_ID = 'a3ce929d0e0e4736';
const LINKED_SPAN_ID = 'ffeeddccbbaa9988';
const hex = (value: string) => Buffer.from(value, 'hex');

// The same export request in both encodings. The protobuf one is written field by field with the
// OTLP field numbers, independently of the receiver's schema, so a wrong number there shows.
const JSON_REQUEST = {
  resourceSpans: [
    {
      resource: {
        attributes: [
          { key: 'service.name', value: { stringValue: 'svc' } },
          { key: 'team.name', value: { stringValue: 'payments' } },
        ],
      },
      scopeSpans: [
        {
          scope: { name: 'chiefofstate' },
          spans: [
            {
              traceId: TRACE_ID,
              spanId: SPAN_ID,
              parentSpanId: PARENT_ID,
              name: 'child',
              kind: 2,
              startTimeUnixNano: '1700000000000000000',
              attributes: [
                { key: 'text', value: { stringValue: 'a' } },
                { key: 'zero', value: { intValue: 0 } },
                { key: 'count', value: { intValue: 7 } },
                { key: 'share', value: { doubleValue: 1.5 } },
                { key: 'flag', value: { boolValue: true } },
                { key: 'list', value: { arrayValue: { values: [{ stringValue: 'x' }, { intValue: 1 }] } } },
                { key: 'empty', value: { arrayValue: { values: [] } } },
              ],
              links: [{ traceId: TRACE_ID, spanId: LINKED_SPAN_ID, attributes: [] }],
              status: { code: 0 },
            },
            { traceId: TRACE_ID, spanId: PARENT_ID, name: 'root', kind: 1, attributes: [], links: [] },
          ],
        },
      ],
    },
  ],
};

function keyValue(writer: BinaryWriter, field: number, key: string, value: (w: BinaryWriter) => void) {
  writer.tag(field, WireType.LengthDelimited).fork();
  writer.tag(1, WireType.LengthDelimited).string(key);
  writer.tag(2, WireType.LengthDelimited).fork();
  value(writer);
  writer.join().join();
}

function protobufRequest(): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).fork(); // resource_spans
  w.tag(1, WireType.LengthDelimited).fork(); // resource
  keyValue(w, 1, 'service.name', (v) => v.tag(1, WireType.LengthDelimited).string('svc'));
  keyValue(w, 1, 'team.name', (v) => v.tag(1, WireType.LengthDelimited).string('payments'));
  w.join();
  w.tag(2, WireType.LengthDelimited).fork(); // scope_spans
  w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string('chiefofstate').join(); // scope
  w.tag(2, WireType.LengthDelimited).fork(); // span
  w.tag(1, WireType.LengthDelimited).bytes(hex(TRACE_ID));
  w.tag(2, WireType.LengthDelimited).bytes(hex(SPAN_ID));
  w.tag(4, WireType.LengthDelimited).bytes(hex(PARENT_ID));
  w.tag(5, WireType.LengthDelimited).string('child');
  w.tag(6, WireType.Varint).int32(2);
  w.tag(7, WireType.Bit64).fixed64(1_700_000_000_000_000_000n);
  keyValue(w, 9, 'text', (v) => v.tag(1, WireType.LengthDelimited).string('a'));
  keyValue(w, 9, 'zero', (v) => v.tag(3, WireType.Varint).int64(0));
  keyValue(w, 9, 'count', (v) => v.tag(3, WireType.Varint).int64(7));
  keyValue(w, 9, 'share', (v) => v.tag(4, WireType.Bit64).double(1.5));
  keyValue(w, 9, 'flag', (v) => v.tag(2, WireType.Varint).bool(true));
  keyValue(w, 9, 'list', (v) => {
    v.tag(5, WireType.LengthDelimited).fork();
    v.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string('x').join();
    v.tag(1, WireType.LengthDelimited).fork().tag(3, WireType.Varint).int64(1).join();
    v.join();
  });
  keyValue(w, 9, 'empty', (v) => v.tag(5, WireType.LengthDelimited).fork().join());
  w.tag(13, WireType.LengthDelimited).fork(); // link
  w.tag(1, WireType.LengthDelimited).bytes(hex(TRACE_ID));
  w.tag(2, WireType.LengthDelimited).bytes(hex(LINKED_SPAN_ID));
  w.join();
  w.tag(15, WireType.LengthDelimited).fork().tag(3, WireType.Varint).int32(0).join(); // status
  w.join();
  w.tag(2, WireType.LengthDelimited).fork(); // root span
  w.tag(1, WireType.LengthDelimited).bytes(hex(TRACE_ID));
  w.tag(2, WireType.LengthDelimited).bytes(hex(PARENT_ID));
  w.tag(5, WireType.LengthDelimited).string('root');
  w.tag(6, WireType.Varint).int32(1);
  w.join();
  w.join().join();
  return w.finish();
}

function post(receiver: OtlpReceiver, body: Uint8Array | string, headers: Record<string, string>) {
  return fetch(receiver.tracesUrl, { method: 'POST', body, headers });
}

describe('startOtlpReceiver', () => {
  const receivers: OtlpReceiver[] = [];
  const start = async () => {
    const receiver = await startOtlpReceiver();
    receivers.push(receiver);
    return receiver;
  };
  afterEach(async () => {
    for (const receiver of receivers.splice(0)) await receiver.close();
  });

  it('gives the same spans and resources for a JSON and a gzip-compressed protobuf request', async () => {
    const fromJson = await start();
    const jsonResponse = await post(fromJson, JSON.stringify(JSON_REQUEST), { 'content-type': 'application/json' });
    expect(jsonResponse.status).toBe(200);
    expect(jsonResponse.headers.get('content-type')).toBe('application/json');
    expect(await jsonResponse.json()).toEqual({});

    const fromProtobuf = await start();
    const protobufResponse = await post(fromProtobuf, gzipSync(protobufRequest()), {
      'content-type': 'application/x-protobuf',
      'content-encoding': 'gzip',
    });
    expect(protobufResponse.status).toBe(200);
    expect(protobufResponse.headers.get('content-type')).toBe('application/x-protobuf');
    expect((await protobufResponse.arrayBuffer()).byteLength).toBe(0);

    expect(fromProtobuf.spans).toEqual(fromJson.spans);
    expect(fromProtobuf.resources).toEqual(fromJson.resources);
    expect(fromJson.requests).toEqual([
      { path: '/v1/traces', contentType: 'application/json', gzip: false, status: 200, spans: 2 },
    ]);
    expect(fromProtobuf.requests).toEqual([
      { path: '/v1/traces', contentType: 'application/x-protobuf', gzip: true, status: 200, spans: 2 },
    ]);

    const [child, root] = fromProtobuf.spans;
    expect(child).toEqual({
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      parentSpanId: PARENT_ID,
      name: 'child',
      kind: 2,
      attributes: JSON_REQUEST.resourceSpans[0]!.scopeSpans[0]!.spans[0]!.attributes,
      links: [{ traceId: TRACE_ID, spanId: LINKED_SPAN_ID }],
      service: 'svc',
    });
    expect(root).toEqual({ traceId: TRACE_ID, spanId: PARENT_ID, name: 'root', kind: 1, attributes: [], links: [], service: 'svc' });
    expect(spanAttribute(child!, 'zero')).toBe(0);
    expect(fromProtobuf.resources).toEqual([{ 'service.name': 'svc', 'team.name': 'payments' }]);
  });

  it('keeps ids lowercase hex when a JSON exporter sends them in capitals', async () => {
    const receiver = await start();
    const span = { traceId: TRACE_ID.toUpperCase(), spanId: SPAN_ID.toUpperCase(), name: 'x', kind: 1 };
    await post(receiver, JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [span] }] }] }), {
      'content-type': 'application/json; charset=utf-8',
    });
    expect(receiver.spans.map((s) => [s.traceId, s.spanId])).toEqual([[TRACE_ID, SPAN_ID]]);
    expect(receiver.requests[0]!.contentType).toBe('application/json');
  });

  it('answers 415 to another content type and 400 to a body that does not decode, recording both', async () => {
    const receiver = await start();
    expect((await post(receiver, 'x', { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await post(receiver, new Uint8Array([0x0a, 0xff]), { 'content-type': 'application/x-protobuf' })).status).toBe(400);
    expect((await post(receiver, '{', { 'content-type': 'application/json' })).status).toBe(400);
    expect(receiver.requests.map((r) => [r.contentType, r.status])).toEqual([
      ['text/plain', 415],
      ['application/x-protobuf', 400],
      ['application/json', 400],
    ]);
    expect(receiver.spans).toEqual([]);
  });
});
