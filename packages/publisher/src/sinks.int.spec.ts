// The sinks against the real brokers of this machine (NATS JetStream on 4222, RabbitMQ on 5672),
// each test with its own stream or queue, deleted after. A TCP proxy between sink and broker is
// cut and restored to make the broker "go away" without touching the shared one.
import { randomUUID } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { connect as amqpConnect, type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil, startTcpProxy, type TcpProxy } from '@chiefofstate/testing';
import { create, toBinary } from '@bufbuild/protobuf';
import { AnySchema, StringValueSchema, anyPack } from '@bufbuild/protobuf/wkt';
import { EventWrapperSchema, MetaDataSchema } from '@chiefofstate/protocol';
import { createNatsSink } from './nats-sink.js';
import type { PublishFailure } from './ordered.js';
import { createPublisherHandler } from './publisher-handler.js';
import type { BrokerMessage, EventSink } from './ports.js';
import { createRabbitMqSink } from './rabbitmq-sink.js';

const KEYS = 20;
const messages = (count: number): BrokerMessage[] =>
  Array.from({ length: count }, (_, i) => {
    const key = `e-${i % KEYS}`;
    const revision = Math.floor(i / KEYS) + 1;
    return { id: `${key}:${revision}`, key, headers: { 'cos-revision': String(revision) }, payload: new TextEncoder().encode(`${key}/${revision}`) };
  });

/** Publishes in batches of 50, each batch again (same ids) until it is acknowledged, as the engine does. */
async function publishAll(
  sink: EventSink,
  all: readonly BrokerMessage[],
  onBatch?: (index: number) => void,
  onFailure?: (failures: number) => void,
) {
  let failures = 0;
  for (let start = 0, index = 0; start < all.length; start += 50, index++) {
    onBatch?.(index);
    for (let attempt = 0; ; attempt++) {
      expect(attempt, 'a batch kept failing').toBeLessThan(400);
      try {
        await sink.publish(all.slice(start, start + 50), { timeoutMs: 1000 });
        break;
      } catch {
        failures++;
        onFailure?.(failures);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }
  return failures;
}

/** Each id at least once, the first copies in per-key order; returns the duplicates. */
function checkReceived(received: readonly string[], all: readonly BrokerMessage[]): number {
  const seen = new Set<string>();
  const lastRevision = new Map<string, number>();
  for (const id of received) {
    if (seen.has(id)) continue;
    seen.add(id);
    const [key, revision] = id.split(':') as [string, string];
    expect(Number(revision), `order of ${key}`).toBe((lastRevision.get(key) ?? 0) + 1);
    lastRevision.set(key, Number(revision));
  }
  expect(seen.size).toBe(all.length);
  return received.length - seen.size;
}

describe('NATS JetStream sink', () => {
  const name = `cos_sink_${process.pid}_${randomUUID().slice(0, 8)}`;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let proxy: TcpProxy;

  beforeAll(async () => {
    nc = await natsConnect({ servers: '127.0.0.1:4222' });
    jsm = await jetstreamManager(nc);
    proxy = await startTcpProxy({ host: '127.0.0.1', port: 4222 });
  });
  afterAll(async () => {
    await proxy?.close();
    await nc?.close();
  });

  const withStream = async (run: (subject: string, stored: () => Promise<string[]>) => Promise<void>) => {
    const stream = `${name}_${randomUUID().slice(0, 6)}`;
    const subject = `cos-sink.${stream}`;
    await jsm.streams.add({ name: stream, subjects: [subject] });
    const stored = async () => {
      const info = await jsm.streams.info(stream);
      const ids: string[] = [];
      for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
        ids.push((await jsm.streams.getMessage(stream, { seq }))!.header.get('Nats-Msg-Id'));
      }
      return ids;
    };
    try {
      await run(subject, stored);
    } finally {
      await jsm.streams.delete(stream);
    }
  };

  it('stores every message once, in order per key; a re-publication is dropped by id', async () => {
    await withStream(async (subject, stored) => {
      const sink = createNatsSink({ url: 'nats://127.0.0.1:4222', subject });
      const all = messages(1000);
      await publishAll(sink, all);
      await publishAll(sink, all.slice(0, 100)); // again: same ids
      await sink.close();
      expect(checkReceived(await stored(), all)).toBe(0);
    });
  }, 60_000);

  it('the publisher handler publishes a read batch; past an unreadable payload it publishes nothing and says how many went', async () => {
    await withStream(async (subject, stored) => {
      const handler = createPublisherHandler(createNatsSink({ url: 'nats://127.0.0.1:4222', subject }));
      const event = (position: number, entityId: string, revision: number) => ({
        position: BigInt(position),
        shard: 0,
        payload: toBinary(EventWrapperSchema, create(EventWrapperSchema, { meta: create(MetaDataSchema, { entityId, revisionNumber: revision }) })),
      });
      await handler.handleBatch([event(1, 'a', 1), event(2, 'b', 1), event(3, 'a', 2)], { timeoutMs: 5000 });
      const unreadable = { position: 6n, shard: 0, payload: new Uint8Array([0x1a, 0x05, 0x01]) };
      const failure = await handler.handleBatch([event(4, 'b', 2), event(5, 'c', 1), unreadable, event(7, 'c', 2)], { timeoutMs: 5000 }).then(
        () => undefined,
        (error: unknown) => error as PublishFailure,
      );
      expect(failure?.accepted).toBe(2);
      expect(failure?.message).toContain('the journal event at position 6 is not an EventWrapper');
      await handler.close();
      expect((await stored()).sort()).toEqual(['a:1', 'a:2', 'b:1', 'b:2', 'c:1']);
    });
  }, 60_000);

  it("acknowledged on the sink's inbox, the messages are stored as through js.publish: same subject, headers, data, ids, duplicates dropped", async () => {
    const storedMessages = async (stream: string) => {
      const info = await jsm.streams.info(stream);
      const out: { subject: string; headers: [string, string[]][]; data: string }[] = [];
      for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
        const stored = (await jsm.streams.getMessage(stream, { seq }))!;
        const headers = [...stored.header.keys()].sort().map((key) => [key, stored.header.values(key)] as [string, string[]]);
        out.push({ subject: stored.subject.split('.')[0]!, headers, data: new TextDecoder().decode(stored.data) });
      }
      return out;
    };
    const results: Awaited<ReturnType<typeof storedMessages>>[] = [];
    for (const requests of [true, false]) {
      await withStream(async (subject) => {
        const sink = createNatsSink({ url: 'nats://127.0.0.1:4222', subject, requests });
        const all = messages(200).map((message) => ({ ...message, headers: { ...message.headers, 'cos-entity-id': message.key, 'cos-x': 'a, b' } }));
        await publishAll(sink, all);
        await publishAll(sink, all.slice(0, 50)); // again: same ids, dropped by the stream
        await sink.close();
        results.push(await storedMessages(subject.slice('cos-sink.'.length)));
      });
    }
    expect(results[0]).toHaveLength(200);
    expect(results[1]).toEqual(results[0]);
  }, 60_000);

  it('fails a publication no stream takes, through the inbox as through js.publish, and goes on once one does', async () => {
    for (const requests of [true, false]) {
      const subject = `cos-sink.nostream_${randomUUID().slice(0, 8)}`;
      const sink = createNatsSink({ url: 'nats://127.0.0.1:4222', subject, requests });
      const failure = await sink.publish(messages(3), { timeoutMs: 2000 }).then(
        () => undefined,
        (error: unknown) => error as PublishFailure,
      );
      expect(failure?.accepted, `requests: ${requests}`).toBe(0);
      expect(failure?.message, `requests: ${requests}`).toMatch(requests ? /no responders|jetstream is not enabled/i : /no JetStream stream takes the subject/);
      const stream = subject.slice('cos-sink.'.length);
      await jsm.streams.add({ name: stream, subjects: [subject] });
      try {
        await sink.publish(messages(3), { timeoutMs: 2000 });
        expect((await jsm.streams.info(stream)).state.messages).toBe(3);
      } finally {
        await sink.close();
        await jsm.streams.delete(stream);
      }
    }
  }, 60_000);

  it('publishes the JSON payload format: the EventWrapper in proto3 JSON, known Anys with @type, others as base64', async () => {
    await withStream(async (subject) => {
      const handler = createPublisherHandler(createNatsSink({ url: 'nats://127.0.0.1:4222', subject }), { format: 'json' });
      // a type COS knows (well-known types are always in the registry) and one it does not
      const account = create(AnySchema, { typeUrl: 'type.googleapis.com/bank.v1.Account', value: new Uint8Array([8, 5]) });
      const payload = toBinary(
        EventWrapperSchema,
        create(EventWrapperSchema, {
          event: anyPack(StringValueSchema, create(StringValueSchema, { value: 'deposited 5' })),
          resultingState: account,
          meta: create(MetaDataSchema, { entityId: 'acc-json', revisionNumber: 3 }),
        }),
      );
      await handler.handleBatch([{ position: 9n, shard: 1, payload }], { timeoutMs: 5000 });
      await handler.close();
      const stream = (await jsm.streams.find(subject))!;
      const message = (await jsm.streams.getMessage(stream, { seq: 1 }))!;
      expect(message.header.get('Nats-Msg-Id')).toBe('acc-json:3');
      expect(message.header.get('content-type')).toBe('application/json');
      expect(message.header.get('cos-revision')).toBe('3');
      expect(JSON.parse(new TextDecoder().decode(message.data))).toEqual({
        event: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'deposited 5' },
        resultingState: Buffer.from(toBinary(AnySchema, account)).toString('base64'),
        meta: { entityId: 'acc-json', revisionNumber: 3 },
      });
    });
  }, 60_000);

  it('loses nothing when the connection is cut mid-burst and restored', async () => {
    await withStream(async (subject, stored) => {
      const sink = createNatsSink({ url: `nats://127.0.0.1:${proxy.port}`, subject });
      const all = messages(1000);
      let cut = false;
      const failures = await publishAll(sink, all, (index) => {
        if (index === 5) {
          proxy.cut();
          cut = true;
        }
      }, (count) => count === 3 && proxy.restore()); // restored once publications failed against the cut link
      await sink.close();
      expect(cut).toBe(true);
      expect(failures).toBeGreaterThan(0);
      expect(checkReceived(await stored(), all)).toBe(0);
    });
  }, 90_000);
});

describe('RabbitMQ sink', () => {
  let amqp: ChannelModel;
  let channel: Channel;
  let proxy: TcpProxy;

  beforeAll(async () => {
    amqp = await amqpConnect('amqp://guest:guest@127.0.0.1:5672');
    channel = await amqp.createChannel();
    proxy = await startTcpProxy({ host: '127.0.0.1', port: 5672 });
  });
  afterAll(async () => {
    await proxy?.close();
    await amqp?.close().catch(() => {});
  });

  const withQueue = async (run: (queue: string, received: string[]) => Promise<void>) => {
    const queue = `cos_sink_${process.pid}_${randomUUID().slice(0, 8)}`;
    await channel.assertQueue(queue, { durable: false });
    const received: string[] = [];
    const { consumerTag } = await channel.consume(queue, (message) => {
      if (!message) return;
      received.push(String(message.properties.messageId));
      expect(message.properties.deliveryMode).toBe(2);
      channel.ack(message);
    });
    try {
      await run(queue, received);
    } finally {
      await channel.cancel(consumerTag);
      await channel.deleteQueue(queue);
    }
  };

  it('delivers every message, in order per key, persistent, with its id', async () => {
    await withQueue(async (queue, received) => {
      const sink = createRabbitMqSink({ url: 'amqp://guest:guest@127.0.0.1:5672', exchange: '', routingKey: queue });
      const all = messages(1000);
      await publishAll(sink, all);
      await sink.close();
      await pollUntil(() => received.length >= all.length, 30_000, 'every message consumed');
      expect(checkReceived(received, all)).toBe(0);
    });
  }, 60_000);

  it('sets message_id, type (the event type URL) and content_type (the payload format) on each message', async () => {
    const queue = `cos_sink_${process.pid}_${randomUUID().slice(0, 8)}`;
    await channel.assertQueue(queue, { durable: false });
    try {
      const payload = toBinary(
        EventWrapperSchema,
        create(EventWrapperSchema, {
          event: anyPack(StringValueSchema, create(StringValueSchema, { value: 'deposited 5' })),
          meta: create(MetaDataSchema, { entityId: 'acc-amqp', revisionNumber: 4 }),
        }),
      );
      for (const format of ['protobuf', 'json'] as const) {
        const handler = createPublisherHandler(createRabbitMqSink({ url: 'amqp://guest:guest@127.0.0.1:5672', exchange: '', routingKey: queue }), { format });
        await handler.handleBatch([{ position: 1n, shard: 0, payload }], { timeoutMs: 5000 });
        await handler.close();
      }
      const got = [await channel.get(queue, { noAck: true }), await channel.get(queue, { noAck: true })];
      expect(got.map((message) => message && message.properties.messageId)).toEqual(['acc-amqp:4', 'acc-amqp:4']);
      expect(got.map((message) => message && message.properties.type)).toEqual(Array(2).fill('type.googleapis.com/google.protobuf.StringValue'));
      expect(got.map((message) => message && message.properties.contentType)).toEqual(['application/x-protobuf', 'application/json']);
    } finally {
      await channel.deleteQueue(queue);
    }
  }, 60_000);

  it('loses nothing when the connection is cut mid-burst and restored; a redelivery has the same id', async () => {
    await withQueue(async (queue, received) => {
      const sink = createRabbitMqSink({ url: `amqp://guest:guest@127.0.0.1:${proxy.port}`, exchange: '', routingKey: queue });
      const all = messages(1000);
      const failures = await publishAll(sink, all, (index) => {
        if (index === 5) proxy.cut();
      }, (count) => count === 3 && proxy.restore());
      await sink.close();
      expect(failures).toBeGreaterThan(0);
      await pollUntil(() => new Set(received).size >= all.length, 30_000, 'every message consumed');
      checkReceived(received, all);
    });
  }, 90_000);

  it('a broker that stops confirming fails the batch once no confirm came for the timeout, naming a message, counting the confirmed ones', async () => {
    await withQueue(async (queue) => {
      const sink = createRabbitMqSink({ url: `amqp://guest:guest@127.0.0.1:${proxy.port}`, exchange: '', routingKey: queue });
      try {
        await sink.publish(messages(40), { timeoutMs: 5000 });
        proxy.stall();
        const started = Date.now();
        const failure = (await sink.publish(messages(40).slice(0, 20), { timeoutMs: 300 }).then(
          () => undefined,
          (error: unknown) => error,
        )) as PublishFailure | undefined;
        const waited = Date.now() - started;
        expect(failure?.message).toMatch(/: publish e-\d+:1: no acknowledgement within 300 ms/);
        expect(failure?.accepted).toBe(0);
        expect(waited).toBeGreaterThanOrEqual(290);
        expect(waited).toBeLessThan(5000);
      } finally {
        proxy.restore();
        await sink.close();
      }
    });
  }, 60_000);
});
