import { describe, expect, it } from 'vitest';
import { createKeyOrder, publishOrdered, publishOrderedOn, publishOrderedWith, withTimeout, type PublishFailure } from './ordered.js';
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

describe('KeyOrder: batches published side by side', () => {
  /** a send that acknowledges only when told to, recording what was sent */
  const controlled = () => {
    const sent: string[] = [];
    const pending = new Map<string, (error?: unknown) => void>();
    return {
      sent,
      send: (m: BrokerMessage, done: (error?: unknown) => void) => {
        sent.push(m.id);
        pending.set(m.id, done);
      },
      answer: (id: string, error?: unknown) => pending.get(id)!(error),
    };
  };

  it("starts a key's messages of the next batch once its messages of the previous one were acknowledged; other keys at once", async () => {
    const order = createKeyOrder();
    const client = controlled();
    const first = publishOrderedWith([message('a', 1), message('a', 2), message('b', 1)], client.send, order);
    const second = publishOrderedWith([message('a', 3), message('c', 1)], client.send, order);
    expect(client.sent).toEqual(['a:1', 'b:1', 'c:1']);
    client.answer('a:1');
    expect(client.sent).toEqual(['a:1', 'b:1', 'c:1', 'a:2']);
    client.answer('c:1');
    client.answer('a:2');
    // a's chain in the first batch ended: the second batch's a goes now
    expect(client.sent).toEqual(['a:1', 'b:1', 'c:1', 'a:2', 'a:3']);
    client.answer('b:1');
    await first;
    client.answer('a:3');
    await second;
    expect(order.chains.size).toBe(0);
  });

  it("never sends a key's later batch after its earlier one failed; the later batch fails, its other keys still go", async () => {
    const order = createKeyOrder();
    const client = controlled();
    const first = publishOrderedWith([message('a', 1), message('b', 1)], client.send, order).catch((error: unknown) => error as PublishFailure);
    const second = publishOrderedWith([message('c', 1), message('a', 2), message('a', 3)], client.send, order).catch(
      (error: unknown) => error as PublishFailure,
    );
    client.answer('a:1', new Error('nack'));
    client.answer('b:1');
    client.answer('c:1');
    expect((await first)?.accepted).toBe(0);
    const failure = await second;
    expect(failure?.message).toBe('nack');
    expect(failure?.accepted).toBe(1);
    expect(client.sent).toEqual(['a:1', 'b:1', 'c:1']);
    expect(order.chains.size).toBe(0);
    // a key whose chains all ended starts afresh
    const third = publishOrderedWith([message('a', 2)], client.send, order);
    client.answer('a:2');
    await third;
  });
});

describe('publishOrderedOn', () => {
  it('sends once the connection is open, and fails every chain with a connection that could not be opened', async () => {
    let open: (link: string) => void = () => {};
    const links: string[] = [];
    const done = publishOrderedOn(
      [message('a', 1), message('b', 1)],
      new Promise<string>((resolve) => (open = resolve)),
      (link, m, answer) => {
        links.push(`${link}/${m.id}`);
        answer();
      },
    );
    await Promise.resolve();
    expect(links).toEqual([]);
    open('conn');
    await done;
    expect(links).toEqual(['conn/a:1', 'conn/b:1']);
    const failure = await publishOrderedOn([message('a', 1)], Promise.reject(new Error('refused')), () => {}).catch((error: unknown) => error as PublishFailure);
    expect(failure).toMatchObject({ message: 'refused', accepted: 0 });
  });
});

describe('withTimeout', () => {
  it('rejects a promise that does not settle in time', async () => {
    await expect(withTimeout(new Promise(() => {}), 10, 'broker')).rejects.toThrow('broker: no acknowledgement within 10 ms');
    await expect(withTimeout(Promise.resolve(1), 10, 'broker')).resolves.toBe(1);
  });
});
