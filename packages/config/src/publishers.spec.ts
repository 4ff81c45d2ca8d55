import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { redactConfig } from './redact.js';
import { load, problemsOf } from './test-support/load.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cos-publishers-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('COS_PUBLISHER_CONFIG (YAML)', () => {
  it('reads one publisher per document, with defaults', () => {
    const path = join(dir, 'publishers.yaml');
    writeFileSync(
      path,
      [
        'publisherId: to-nats',
        'sink: nats',
        'url: nats://nats:4222',
        'subject: cos.events',
        '---',
        'publisherId: to-rabbit',
        'sink: rabbitmq',
        'url: amqp://cos:secret@rabbit:5672/prod',
        'exchange: cos-events',
        'timeout: 3000',
        'autoStart: false',
      ].join('\n'),
    );
    const { config } = load({ COS_PUBLISHER_CONFIG: path });
    expect(config.publishers).toEqual([
      { publisherId: 'to-nats', sink: 'nats', url: 'nats://nats:4222', subject: 'cos.events', format: 'protobuf', timeoutMs: 10_000, autoStart: true, enabled: true },
      {
        publisherId: 'to-rabbit',
        sink: 'rabbitmq',
        url: 'amqp://cos:secret@rabbit:5672/prod',
        exchange: 'cos-events',
        routingKey: undefined,
        format: 'protobuf',
        timeoutMs: 3000,
        autoStart: false,
        enabled: true,
      },
    ]);
    expect(JSON.stringify(redactConfig(config))).not.toContain('secret');
  });

  it('reports unknown keys, a missing subject, settings of the other sink, and an unknown format', () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(
      path,
      [
        'publisherId: a',
        'sink: nats',
        'url: nats://nats:4222',
        'topic: x',
        '---',
        'publisherId: b',
        'sink: nats',
        'url: nats://nats:4222',
        'exchange: e',
        '---',
        'publisherId: c',
        'sink: rabbitmq',
        'url: amqp://rabbit',
        'format: avro',
      ].join('\n'),
    );
    const problems = problemsOf({ COS_PUBLISHER_CONFIG: path });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/document 1: unknown key "topic"/),
        expect.stringMatching(/publisher "b" .*subject is missing/),
        expect.stringMatching(/publisher "b" .*exchange does not apply to sink nats/),
        expect.stringMatching(/document 3: format="avro": expected protobuf .* or json/),
      ]),
    );
  });
});

describe('COS_PUBLISHER_CONFIG__<SETTING>__<ID>', () => {
  it('reads a publisher from variables', () => {
    const { config } = load({
      COS_PUBLISHER_CONFIG__SINK__events: 'rabbitmq',
      COS_PUBLISHER_CONFIG__URL__events: 'amqp://guest:guest@127.0.0.1:5672',
      COS_PUBLISHER_CONFIG__ROUTING_KEY__events: 'cos.events',
      COS_PUBLISHER_CONFIG__ENABLED__events: 'false',
    });
    expect(config.publishers).toEqual([
      expect.objectContaining({ publisherId: 'events', sink: 'rabbitmq', exchange: '', routingKey: 'cos.events', enabled: false }),
    ]);
  });

  it('reports a bad sink, a bad URL, an unknown setting and an id shared with a read side', () => {
    expect(
      problemsOf({
        COS_PUBLISHER_CONFIG__SINK__a: 'kafka',
        COS_PUBLISHER_CONFIG__URL__b: 'http://x',
        COS_PUBLISHER_CONFIG__SINK__b: 'nats',
        COS_PUBLISHER_CONFIG__SUBJECT__b: 'a.b',
        COS_PUBLISHER_CONFIG__COLOR__c: 'red',
      }),
    ).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/COS_PUBLISHER_CONFIG__SINK__a="kafka": expected one of nats, rabbitmq/),
        expect.stringMatching(/COS_PUBLISHER_CONFIG__URL__b="http:\/\/x": expected a broker URL/),
        expect.stringMatching(/COS_PUBLISHER_CONFIG__COLOR__c: unknown publisher setting "COLOR"/),
      ]),
    );
    expect(
      problemsOf({
        COS_READ_SIDE_ENABLED: 'true',
        COS_READ_SIDE_CONFIG__HOST__shared: 'rs',
        COS_READ_SIDE_CONFIG__PORT__shared: '50052',
        COS_PUBLISHER_CONFIG__SINK__shared: 'nats',
        COS_PUBLISHER_CONFIG__URL__shared: 'nats://n:4222',
        COS_PUBLISHER_CONFIG__SUBJECT__shared: 'cos.events',
      }),
    ).toEqual([expect.stringMatching(/publisher "shared" has the id of a read side/)]);
  });

  it('does not warn about its variables as unknown COS_* names', () => {
    const { warnings } = load({
      COS_PUBLISHER_CONFIG__SINK__n: 'nats',
      COS_PUBLISHER_CONFIG__URL__n: 'nats://n:4222',
      COS_PUBLISHER_CONFIG__SUBJECT__n: 'cos.events',
    });
    expect(warnings.join('\n')).not.toMatch(/COS_PUBLISHER/);
  });
});
