// An acknowledged command is never lost and an event is never persisted twice, also when the
// server is killed with SIGKILL in the middle of a load.
import { afterAll, describe, expect, it } from 'vitest';
import { command, startCos, stateOf, type CosFixture } from './support/cos-fixture.js';
import { startTestHandler, type RunningProcess } from './support/processes.js';

describe('cos-server killed with SIGKILL under load', () => {
  let handler: (RunningProcess & { port: number }) | undefined;
  let first: CosFixture | undefined;
  let second: CosFixture | undefined;

  afterAll(async () => {
    await second?.dispose();
    await first?.dispose().catch(() => {});
    await handler?.kill();
  });

  it('keeps every acknowledged event exactly once', async () => {
    handler = await startTestHandler();
    const env = {
      WRITE_SIDE_HANDLER_SERVICE_HOST: '127.0.0.1',
      WRITE_SIDE_HANDLER_SERVICE_PORT: String(handler.port),
    };
    first = await startCos(env);
    const entities = Array.from({ length: 64 }, (_, i) => `crash-${i}`);
    const acked = new Map<string, { revision: number; state: Uint8Array }[]>();
    let stop = false;
    let errors = 0;

    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const entityId = entities[(w * 7 + i) % entities.length]!;
        try {
          const { response } = await first!.send(entityId, command('Emit', { events: [`w${w}-${i}`] }), { deadlineMs: 5000 });
          const list = acked.get(entityId) ?? [];
          list.push({ revision: response.meta!.revisionNumber, state: response.state!.value });
          acked.set(entityId, list);
        } catch {
          errors++;
          if (stop) return;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const workers = Array.from({ length: 32 }, (_, w) => worker(w));
    // let the load run until it has acknowledged a good number (bounded: a loaded machine is
    // slower, not wrong), then kill without warning
    const ackedSoFar = () => [...acked.values()].reduce((n, l) => n + l.length, 0);
    for (const started = Date.now(); ackedSoFar() < 300 && Date.now() - started < 30_000; ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(ackedSoFar()).toBeGreaterThan(100);
    first.server.child.kill('SIGKILL');
    await first.server.exited;
    stop = true;
    await Promise.all(workers);
    expect(errors).toBeGreaterThan(0);

    // a new process on the same store
    const restarted = (second = await startCos(env, first.schema));
    let total = 0;
    for (const entityId of entities) {
      const rows = await second.journal(entityId);
      const revisions = rows.map((r) => Number(r.revision));
      // contiguous from 1, nothing twice
      expect(revisions).toEqual(Array.from({ length: revisions.length }, (_, i) => i + 1));
      for (const ack of acked.get(entityId) ?? []) {
        const row = rows.find((r) => Number(r.revision) === ack.revision);
        expect(row, `${entityId} revision ${ack.revision} was acknowledged`).toBeDefined();
        expect(Buffer.from(row!.wrapper.resultingState!.value).equals(Buffer.from(ack.state))).toBe(true);
        total++;
      }
      // each event's state chains from the previous one: no event is there twice
      const names = rows.map((r) => stateOf(r.wrapper.resultingState).events.at(-1));
      expect(new Set(names).size).toBe(names.length);
      // the entity carries on from its last persisted revision
      // the killed process's session ended with it, so the new one took its shards in its first
      // lease round, without waiting for them to expire
      const { response } = await restarted.send(entityId, command('Emit', { events: ['after-restart'] }));
      expect(response.meta!.revisionNumber).toBe(revisions.length + 1);
    }
    expect(total).toBe([...acked.values()].reduce((n, l) => n + l.length, 0));
  }, 120_000);
});
