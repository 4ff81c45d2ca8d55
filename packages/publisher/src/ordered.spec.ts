import { describe, expect, it } from 'vitest';
import { publishOrdered, publishOrderedWith, withTimeout, type PublishFailure } from './ordered.js';
import type { BrokerMessage } from './ports.js';

const message = (key: string, n: number): BrokerMessage => ({ id: `${key}:${n}`, key, headers: {}, payload: new Uint8Array() });

describe('publishOrdered', () => {
  it('sends a key only after its previous message was acknowledged, keys side by side', async () => {
    const started: string[] = [];
    const pending = new Map<string, () => void>();
    const done = publishOrdered([message('a', 1), message('b', 1), message('a', 2)], (m) => {
      started.push(m.id);
      return new Promise<void>((resolve) => pending.set(m.id, resolve));
    });
    await Promise.resolve();
    expect(started).toEqual(['a:1', 'b:1']);
    pending.get('a:1')!();
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toEqual(['a:1', 'b:1', 'a:2']);
    pending.get('b:1')!();
    pending.get('a:2')!();
    await done;
  });

  it('never sends a later message of a failed key, and rejects once everything settled', async () => {
    const sent: string[] = [];
    await expect(
      publishOrdered([message('a', 1), message('a', 2), message('b', 1)], async (m) => {
        sent.push(m.id);
        if (m.id === 'a:1') throw new Error('nack');
      }),
    ).rejects.toThrow('nack');
    expect(sent).toEqual(['a:1', 'b:1']);
  });

  it('says how many leading messages were acknowledged when a later one failed', async () => {
    const batch = [message('a', 1), message('b', 1), message('a', 2), message('c', 1), message('b', 2)];
    const failure = await publishOrdered(batch, async (m) => {
      if (m.id === 'a:2') throw new Error('nack');
    }).catch((error: unknown) => error as PublishFailure);
    expect(failure).toBeInstanceOf(Error);
    expect(failure?.message).toBe('nack');
    // a:1 and b:1 were acknowledged; a:2 not (c:1 and b:2 were, but come after it)
    expect(failure?.accepted).toBe(2);
    await expect(publishOrdered([message('a', 1)], () => Promise.reject(new Error('down')))).rejects.toMatchObject({ message: 'down', accepted: 0 });
  });
});

describe('publishOrderedWith', () => {
  it('takes answers given at once (a long chain of one key goes round a loop, not down the stack)', async () => {
    const batch = Array.from({ length: 100_000 }, (_, n) => message('a', n));
    let sent = 0;
    await publishOrderedWith(batch, (_m, done) => {
      sent++;
      done();
    });
    expect(sent).toBe(100_000);
  });

  it('counts a send that throws as that message failed, ignores a second answer, and keeps key order', async () => {
    const sent: string[] = [];
    const later: (() => void)[] = [];
    const failure = await publishOrderedWith([message('a', 1), message('b', 1), message('a', 2), message('b', 2)], (m, done) => {
      sent.push(m.id);
      if (m.id === 'b:1') throw new Error('channel closed');
      if (m.id === 'a:1') {
        later.push(() => {
          done();
          done(new Error('late'));
        });
        queueMicrotask(() => later.shift()!());
        return;
      }
      done();
    }).catch((error: unknown) => error as PublishFailure);
    expect(failure?.message).toBe('channel closed');
    expect(failure?.accepted).toBe(1);
    expect(sent).toEqual(['a:1', 'b:1', 'a:2']);
  });

  it('resolves an empty batch and reads a rejection without a reason as a failure', async () => {
    await expect(publishOrderedWith([], () => {})).resolves.toBeUndefined();
    await expect(publishOrdered([message('a', 1)], () => Promise.reject(undefined))).rejects.toMatchObject({ accepted: 0 });
  });
});

describe('withTimeout', () => {
  it('rejects a promise that does not settle in time', async () => {
    await expect(withTimeout(new Promise(() => {}), 10, 'broker')).rejects.toThrow('broker: no acknowledgement within 10 ms');
    await expect(withTimeout(Promise.resolve(1), 10, 'broker')).resolves.toBe(1);
  });
});
