// Every persisted event reaches NATS JetStream and RabbitMQ, in order per entity, at least once,
// with a stable message id: through a broker connection cut mid-burst (a TCP proxy between COS and
// the shared brokers, which are never stopped) and a SIGKILL of cos-server mid-burst.
import { randomUUID } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { connect as amqpConnect, type Channel, type ChannelModel } from 'amqplib';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePayload, MESSAGE_HEADERS } from '@chiefofstate/publisher';
import { pollUntil, startTcpProxy, type TcpProxy } from '@chiefofstate/testing';
import { command, startCos, type CosFixture } from './support/cos-fixture.js';
import { startTestHandler, type RunningProcess } from './support/processes.js';

const NATS = { host: '127.0.0.1', port: 4222 };
const RABBITMQ = { host: '127.0.0.1', port: 5672 };

/** One message as a consumer saw it. */
interface Received {
  readonly id: string;
  readonly entityId: string;
  readonly revision: number;
  readonly traceparent: string;
  readonly eventType: string;
}

/** Every command of the tests carries this trace id: each message must carry the command's. */
const TRACE_ID = randomUUID().replaceAll('-', '');
const traceMetadata = () => {
  const metadata = new grpc.Metadata();
  metadata.set('traceparent', `00-${TRACE_ID}-${randomUUID().replaceAll('-', '').slice(0, 16)}-01`);
  return metadata;
};

describe('publishing to NATS JetStream and RabbitMQ', () => {
  const unique = `cos_e2e_${process.pid}_${randomUUID().slice(0, 8)}`;
  const stream = unique;
  const subject = `cos-e2e.${unique}`;
  const queue = unique;
  let handler: (RunningProcess & { port: number }) | undefined;
  let nc: NatsConnection | undefined;
  let jsm: JetStreamManager | undefined;
  let amqp: ChannelModel | undefined;
  let channel: Channel | undefined;
  let natsProxy: TcpProxy | undefined;
  let rabbitProxy: TcpProxy | undefined;
  const cos: CosFixture[] = [];
  const rabbitReceived: Received[] = [];

  beforeAll(async () => {
    handler = await startTestHandler();
    nc = await natsConnect({ servers: `${NATS.host}:${NATS.port}` });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [subject] });
    amqp = await amqpConnect(`amqp://guest:guest@${RABBITMQ.host}:${RABBITMQ.port}`);
    channel = await amqp.createChannel();
    await channel.assertQueue(queue, { durable: false, autoDelete: false });
    await channel.consume(queue, (message) => {
      if (!message) return;
      const headers = message.properties.headers ?? {};
      rabbitReceived.push({
        id: String(message.properties.messageId),
        entityId: decodePayload(message.content).meta!.entityId,
        revision: Number(headers[MESSAGE_HEADERS.revision]),
        traceparent: String(headers['traceparent']),
        eventType: String(message.properties.type),
      });
      channel!.ack(message);
    });
    natsProxy = await startTcpProxy(NATS);
    rabbitProxy = await startTcpProxy(RABBITMQ);
  }, 60_000);

  afterAll(async () => {
    for (const fixture of cos.reverse()) await fixture.dispose().catch(() => {});
    await handler?.kill();
    await natsProxy?.close();
    await rabbitProxy?.close();
    await jsm?.streams.delete(stream).catch(() => {});
    await nc?.close();
    await channel?.deleteQueue(queue).catch(() => {});
    await amqp?.close().catch(() => {});
  });

  const env = () => ({
    WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
    WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler!.port),
    COS_NUM_SHARDS: '4',
    COS_PUBLISHER_CONFIG__SINK__to_nats: 'nats',
    COS_PUBLISHER_CONFIG__URL__to_nats: `nats://127.0.0.1:${natsProxy!.port}`,
    COS_PUBLISHER_CONFIG__SUBJECT__to_nats: subject,
    COS_PUBLISHER_CONFIG__TIMEOUT__to_nats: '2000',
    COS_PUBLISHER_CONFIG__SINK__to_rabbit: 'rabbitmq',
    COS_PUBLISHER_CONFIG__URL__to_rabbit: `amqp://guest:guest@127.0.0.1:${rabbitProxy!.port}`,
    COS_PUBLISHER_CONFIG__ROUTING_KEY__to_rabbit: queue,
    COS_PUBLISHER_CONFIG__TIMEOUT__to_rabbit: '2000',
  });

  /** Every message in the NATS stream, in stream order. */
  const natsReceived = async (): Promise<Received[]> => {
    const info = await jsm!.streams.info(stream);
    const out: Received[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const message = await jsm!.streams.getMessage(stream, { seq });
      if (!message) continue;
      out.push({
        id: message.header.get('Nats-Msg-Id'),
        entityId: decodePayload(message.data).meta!.entityId,
        revision: Number(message.header.get(MESSAGE_HEADERS.revision)),
        traceparent: message.header.get('traceparent'),
        eventType: message.header.get(MESSAGE_HEADERS.eventType),
      });
    }
    return out;
  };

  const entities = Array.from({ length: 24 }, (_, i) => `pub-${i}`);

  /** Commands from 16 concurrent senders until `stop()`; failures (a killed server) are retried. */
  const burst = (fixture: () => CosFixture) => {
    let stopped = false;
    let sent = 0;
    const worker = async (w: number) => {
      for (let i = 0; !stopped && i < 10_000; i++) {
        try {
          await fixture().send(entities[(w * 5 + i) % entities.length]!, command('Emit', { events: [`w${w}-${i}`] }), {
            deadlineMs: 5000,
            metadata: traceMetadata(),
          });
          sent++;
        } catch {
          if (stopped) return;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    };
    const running = Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    return {
      sent: () => sent,
      stop: async () => {
        stopped = true;
        await running;
      },
    };
  };

  /** Every journal event, by entity, as message ids in revision order. */
  const journalIds = async (fixture: CosFixture) => {
    const byEntity = new Map<string, string[]>();
    for (const entityId of entities) {
      byEntity.set(entityId, (await fixture.journal(entityId)).map((row) => `${entityId}:${row.revision}`));
    }
    return byEntity;
  };

  /** Each id at least once; the first copy of each id in per-entity revision order; duplicates counted. */
  const check = (what: string, received: readonly Received[], expected: Map<string, string[]>) => {
    const firstSeen = new Map<string, string[]>();
    const seen = new Set<string>();
    let duplicates = 0;
    for (const message of received) {
      expect(message.id).toBe(`${message.entityId}:${message.revision}`);
      expect(message.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));
      expect(message.eventType).toMatch(/^type\.googleapis\.com\//);
      if (seen.has(message.id)) {
        duplicates++;
        continue;
      }
      seen.add(message.id);
      const list = firstSeen.get(message.entityId) ?? [];
      list.push(message.id);
      firstSeen.set(message.entityId, list);
    }
    for (const [entityId, ids] of expected) expect(firstSeen.get(entityId) ?? [], `${what}: ${entityId}`).toEqual(ids);
    return duplicates;
  };

  const allPublished = async (expected: Map<string, string[]>) => {
    const total = [...expected.values()].reduce((n, ids) => n + ids.length, 0);
    await pollUntil(
      async () => new Set((await natsReceived()).map((m) => m.id)).size >= total && new Set(rabbitReceived.map((m) => m.id)).size >= total,
      90_000,
      `all ${total} events published to both brokers`,
      250,
    );
  };

  it('publishes a burst through a broker connection cut and restored', async () => {
    const fixture = await startCos(env());
    cos.push(fixture);
    const load = burst(() => fixture);
    await pollUntil(() => load.sent() >= 200, 60_000, '200 commands acknowledged');
    const publishedBefore = rabbitReceived.length;
    natsProxy!.cut();
    rabbitProxy!.cut();
    const cutAt = load.sent();
    await pollUntil(() => load.sent() >= cutAt + 200, 60_000, '200 more commands while the brokers are cut off');
    // cut off: at most what was in flight (one event per stream: 4 shards) arrived meanwhile
    expect(rabbitReceived.length - publishedBefore).toBeLessThanOrEqual(4);
    const accepted = { nats: natsProxy!.accepted, rabbit: rabbitProxy!.accepted };
    natsProxy!.restore();
    rabbitProxy!.restore();
    await pollUntil(() => load.sent() >= cutAt + 400, 60_000, '200 more commands after the restore');
    await load.stop();
    const expected = await journalIds(fixture);
    await allPublished(expected);
    expect(publishedBefore).toBeGreaterThan(0);
    // both sinks connected again after the cut
    expect(natsProxy!.accepted).toBeGreaterThan(accepted.nats);
    expect(rabbitProxy!.accepted).toBeGreaterThan(accepted.rabbit);
    const natsDuplicates = check('nats', await natsReceived(), expected);
    const rabbitDuplicates = check('rabbitmq', rabbitReceived, expected);
    // JetStream drops a re-publication of an id within its duplicate window
    expect(natsDuplicates).toBe(0);
    console.info(`cut: ${[...expected.values()].flat().length} events; rabbitmq duplicates ${rabbitDuplicates}`);
  }, 240_000);

  it('publishes a burst through a SIGKILL of cos-server and its restart', async () => {
    const first = cos[0]!;
    let current = first;
    const load = burst(() => current);
    const before = load.sent();
    await pollUntil(() => load.sent() >= before + 300, 60_000, '300 commands acknowledged');
    first.server.child.kill('SIGKILL');
    await first.server.exited;
    const second = await startCos(env(), first.schema);
    cos.push(second);
    current = second;
    const restartedAt = load.sent();
    await pollUntil(() => load.sent() >= restartedAt + 300, 60_000, '300 commands after the restart');
    await load.stop();
    const expected = await journalIds(second);
    await allPublished(expected);
    expect(check('nats', await natsReceived(), expected)).toBe(0);
    const rabbitDuplicates = check('rabbitmq', rabbitReceived, expected);
    console.info(`kill: ${[...expected.values()].flat().length} events; rabbitmq duplicates ${rabbitDuplicates}`);
  }, 240_000);
});
