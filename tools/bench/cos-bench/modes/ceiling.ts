// The default mode: cos-server against its ceiling (the same gRPC edge calling the same handler,
// nothing persisted), at every caller count over many entities and one hot one; then the
// resident memory of a fresh cos-server, idle and with many active entities. Section `cos`.
import { median } from '../../bench-support.js';
import { rssMiB, start, profile, tsx } from '../processes.js';
import { drive, startCos, type Bench, type Cell, type Keys, type Mode, type System } from '../run.js';
import { machineDescription, writeSection } from '../report-support.js';

interface Memory {
  idleMiB: number;
  activeMiB: number;
  entities: number;
  seconds: number;
  errors: number;
}

export const ceilingMode: Mode = {
  flag: undefined,
  systems: ['cos', 'ceiling'],
  docSection: 'cos',
  async start(bench) {
    const ceiling = start('ceiling', [...profile(bench.options.cpuProfDir, 'ceiling'), ...tsx('ceiling.ts')], { HANDLER_PORT: String(bench.handlerPort) });
    bench.procs.push(ceiling);
    const port = Number((await ceiling.waitFor(/listening (\d+)/))[1]);
    bench.systems.set('ceiling', { servers: [ceiling], target: `127.0.0.1:${port}` });
  },
  async report(bench, cells) {
    report(bench, cells, bench.options.measureMemory ? await measureMemory(bench) : undefined);
  },
};

/** The resident memory of a fresh cos-server: idle, then with one command sent to each of memoryEntities entities. */
async function measureMemory(bench: Bench): Promise<Memory> {
  const { memoryEntities } = bench.options;
  const { runId } = bench;
  await bench.systems.get('cos')!.servers[0]!.stop();
  const fresh = await startCos(
    bench,
    { COS_PASSIVATE_AFTER: '3600', COS_MAX_ACTIVE_ENTITIES: String(Math.max(100_000, memoryEntities)) },
    'cos-server-memory',
  );
  const cos = fresh.proc;
  bench.systems.set('cos', { servers: [cos], target: `127.0.0.1:${fresh.port}`, serviceName: bench.serviceName, metricsPorts: [fresh.metricsPort] });
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const idleMiB = rssMiB(cos.child.pid);
  console.error(`memory: idle cos-server RSS ${idleMiB.toFixed(1)} MiB; sending one command to each of ${memoryEntities} entities`);
  const filled = await drive(bench, 'cos', {
    callers: 64,
    prefix: `m-${runId}-`,
    count: memoryEntities,
    mode: 'once',
    warmupMs: 0,
    durationMs: 0,
  });
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const activeMiB = rssMiB(cos.child.pid);
  console.error(
    `memory: ${filled.ok} entities in ${filled.seconds.toFixed(1)} s, RSS ${activeMiB.toFixed(1)} MiB` +
      (filled.errors > 0 ? `; ${filled.errors} errors (${filled.firstError})` : ''),
  );
  return { idleMiB, activeMiB, entities: filled.ok, seconds: filled.seconds, errors: filled.errors };
}

function report(bench: Bench, cells: Cell[], memory: Memory | undefined): void {
  const { callerCounts, repeats, warmupMs, durationMs, entityCount, keySets, writeDoc } = bench.options;
  const summary = (system: System, keys: Keys, callers: number) => {
    const mine = cells.filter((c) => c.system === system && c.keys === keys && c.callers === callers);
    return {
      perSecond: median(mine.map((c) => c.result.perSecond)),
      p50: median(mine.map((c) => c.result.p50Ms)),
      p99: median(mine.map((c) => c.result.p99Ms)),
      errors: mine.reduce((sum, c) => sum + c.result.errors, 0),
      cpu: {
        client: median(mine.map((c) => c.cpu.client)),
        server: median(mine.map((c) => c.cpu.server)),
        handler: median(mine.map((c) => c.cpu.handler)),
        postgres: median(mine.map((c) => c.cpu.postgres)),
      },
    };
  };
  const n0 = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
  const ms = (v: number) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v.toFixed(1)) : '-');
  const label = (keys: Keys) => (keys === 'spread' ? `${entityCount.toLocaleString('en')} entities` : '1 hot entity');

  const lines: string[] = [
    '| entities | callers | COS cmd/s | p50 ms | p99 ms | ceiling cmd/s | p50 ms | p99 ms | COS/ceiling cmd/s | COS/ceiling p99 |',
    '|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  const verdicts: string[] = [];
  const cpuLines: string[] = [
    '| entities | callers | side | client | server | handler | PostgreSQL | total |',
    '|:--|--:|:--|--:|--:|--:|--:|--:|',
  ];
  let errors = 0;
  for (const keys of keySets) {
    for (const callers of callerCounts) {
      const c = summary('cos', keys, callers);
      const k = summary('ceiling', keys, callers);
      errors += c.errors + k.errors;
      const throughputRatio = c.perSecond / k.perSecond;
      const p99Ratio = c.p99 / k.p99;
      lines.push(
        `| ${label(keys)} | ${callers} | ${n0(c.perSecond)} | ${ms(c.p50)} | ${ms(c.p99)} | ${n0(k.perSecond)} | ${ms(k.p50)} | ${ms(k.p99)} | ${(100 * throughputRatio).toFixed(0)}% | ${p99Ratio.toFixed(2)}x |`,
      );
      for (const [side, s] of [['COS', c], ['ceiling', k]] as const) {
        const total = s.cpu.client + s.cpu.server + s.cpu.handler + s.cpu.postgres;
        cpuLines.push(
          `| ${label(keys)} | ${callers} | ${side} | ${s.cpu.client.toFixed(3)} | ${s.cpu.server.toFixed(3)} | ${s.cpu.handler.toFixed(3)} | ${side === 'COS' ? s.cpu.postgres.toFixed(3) : '-'} | ${total.toFixed(3)} |`,
        );
      }
      const check = (ok: boolean, what: string) =>
        verdicts.push(`- ${ok ? 'met' : '**missed**'}: ${label(keys)}, ${callers} caller${callers === 1 ? '' : 's'}, ${what}`);
      // throughput alone hides what each command costs: the CPU of both sides goes beside it
      // (COS also persists, so its CPU is no target; the table below splits it by process)
      const cpuOf = (s: typeof c) => s.cpu.client + s.cpu.server + s.cpu.handler + s.cpu.postgres;
      if (callers === 64) {
        check(
          throughputRatio >= 0.5,
          `throughput ${(100 * throughputRatio).toFixed(0)}% of the ceiling (target >= 50%), at ${(cpuOf(c) / cpuOf(k)).toFixed(2)}x its CPU per command`,
        );
      }
      if (callers === 1) check(c.p99 < 10, `p99 ${ms(c.p99)} ms (target < 10 ms)`);
      check(p99Ratio <= 2, `p99 ${p99Ratio.toFixed(2)}x the ceiling's (target <= 2x)`);
    }
  }

  const memoryLines = memory
    ? [
        `| cos-server RSS | MiB |`,
        '|:--|--:|',
        `| idle (started, store migrated, no entity) | ${memory.idleMiB.toFixed(0)} |`,
        `| ${memory.entities.toLocaleString('en')} active entities | ${memory.activeMiB.toFixed(0)} |`,
        `| growth per active entity | ${(((memory.activeMiB - memory.idleMiB) * 1024 * 1024) / memory.entities).toFixed(0)} bytes |`,
        '',
        'RSS is read 2 s after the last command, without forcing a garbage collection: it includes',
        'garbage V8 has not collected yet and the heap it keeps, not only the entities themselves.',
        '',
        `(${memory.entities.toLocaleString('en')} first commands, 64 callers, took ${memory.seconds.toFixed(1)} s: ` +
          `${n0(memory.entities / memory.seconds)} cmd/s including each entity's recovery query; ${memory.errors} errors.)`,
      ]
    : ['(memory not measured in this run)'];

  const body = [
    ...lines,
    '',
    `Medians of ${repeats} runs; each cell ${warmupMs / 1000} s warm-up then ${durationMs / 1000} s measured. Errors in all cells: ${errors}.`,
    '',
    'Targets (issue 4):',
    '',
    ...verdicts,
    '',
    'CPU per command, ms (median; from /proc, all processes share the 2 cores):',
    '',
    ...cpuLines,
    '',
    'Resident memory:',
    '',
    ...memoryLines,
  ];
  console.log(body.join('\n'));

  if (!writeDoc) return;
  writeSection('cos', [
    '<!-- cos:start -->',
    '## ProcessCommand: cos-server against its ceiling',
    '',
    'Run: `npx nx run @chiefofstate/cos-server:build && npx tsx tools/bench/cos-bench.ts` (options:',
    '`--duration=5 --warmup=1 --repeats=3 --callers=1,16,64,256 --entities=10000 --memory-entities=100000`;',
    'PostgreSQL from `COS_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, in a',
    'throw-away schema).',
    '',
    'Five processes: a stock `@grpc/grpc-js` client (closed loop: each caller sends its next',
    '`ProcessCommand` when the previous one answered; round robin over the entities, or all on one),',
    'a minimal `@grpc/grpc-js` write handler (events = [command], resulting state = a 4-byte `Any`),',
    'the built cos-server with its default settings on PostgreSQL 15 (every command: `HandleCommand`,',
    '`HandleEvent`, a journal append committed before the reply), and the **ceiling**: the same gRPC',
    'edge (`@chiefofstate/grpc-api`) calling the same handler through the same client',
    '(`@chiefofstate/handler-client`), `HandleCommand` then `HandleEvent` then the reply, with no entity',
    'runtime and nothing persisted. COS and the ceiling run in the same run, cell after cell. Before',
    'the cells every entity gets one command, so COS serves them from memory (no recovery reads).',
    '',
    `Machine: ${machineDescription()}. The client, COS (or the ceiling), the handler and PostgreSQL share the two`,
    'cores with whatever else runs there (other test suites and benchmarks, while these figures were',
    'taken), so figures move a lot between runs, p99 most: compare the two sides of one run rather',
    'than absolute numbers, and rerun before drawing conclusions.',
    '',
    'Reading the numbers:',
    '',
    '- Over many entities COS does the ceiling\'s work plus the entity runtime and a group-committed',
    '  journal append, so at 16 callers and more it is CPU-bound on the shared cores like the ceiling;',
    '  the CPU table below shows what each process spends per command.',
    '- With one caller, a command waits for its append (a PostgreSQL round trip and commit) on top of',
    '  the ceiling\'s two handler calls: that difference is the latency gap.',
    '- One hot entity is served strictly one command at a time (protocol, behaviour 2), and each',
    '  command needs HandleCommand, then HandleEvent on its result: two handler round trips in',
    '  sequence that no amount of parallel work can overlap. Commands queued on the entity share one',
    '  append, so the journal is not the limit; the round trips are. The ceiling keeps no state and',
    '  runs all callers in parallel, so it scales with CPU while the hot entity does not.',
    '',
    ...body,
    '<!-- cos:end -->',
  ]);
}
