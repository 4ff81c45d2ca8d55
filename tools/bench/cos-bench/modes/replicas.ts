// --replicas: what entity sharding across replicas costs. `one`: the cos-server, every caller on
// it; `two`: two cos-server replicas on one schema of their own, each owning half the entity
// shards before anything is measured, the callers split evenly between them. Section `replicas`.
import { median } from '../../bench-support.js';
import { sleep, type Proc } from '../processes.js';
import { createSchema, startCos, type Bench, type Cell, type Keys, type Mode, type Routing, type System } from '../run.js';
import { latencyMs, machineDescription, pairedRatio, repeatMedians, writeSection } from '../report-support.js';

/** cos-server's default COS_NUM_SHARDS: the two replicas own half each */
const ENTITY_SHARDS = 16;

export const replicasMode: Mode = {
  flag: 'replicas',
  systems: ['cos', 'two'],
  docSection: 'replicas',
  shown: (system) => (system === 'cos' ? 'one' : system),
  async start(bench) {
    const twoSchema = await createSchema(bench, `${bench.schema}_two`);
    const twoServiceName = `${bench.serviceName}-two`;
    const pair: { proc: Proc; port: number; metricsPort: number }[] = [];
    // one after the other, as a replica joins a running one; both advertise 127.0.0.1:<COS_PORT>
    for (const name of ['cos-server-a', 'cos-server-b']) {
      pair.push(await startCos(bench, { POD_IP: '127.0.0.1', COS_SERVICE_NAME: twoServiceName }, name, twoSchema));
    }
    bench.systems.set('two', {
      servers: pair.map((replica) => replica.proc),
      target: pair.map((replica) => `127.0.0.1:${replica.port}`),
      serviceName: twoServiceName,
      metricsPorts: pair.map((replica) => replica.metricsPort),
    });
    await replicasSettle(bench, twoSchema);
  },
  routing,
  report: reportReplicas,
};

// ---- the replicas' /metrics ----------------------------------------------------------------

/** The sum of a metric's samples whose labels include `labels` in a Prometheus text exposition. */
function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const found = new Map([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found.get(key) === value)) sum += Number(match[3]);
  }
  return sum;
}

async function routing(bench: Bench, system: System): Promise<Routing> {
  const metricsPorts = bench.systems.get(system)!.metricsPorts ?? [];
  const texts = await Promise.all(metricsPorts.map(async (port) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text()));
  const routed = (outcome: string) =>
    texts.reduce((sum, text) => sum + metricSum(text, 'cos_forwarded_calls_total', { method: 'ProcessCommand', outcome }), 0);
  return {
    forwarded: routed('forwarded'),
    unreachable: routed('owner_unreachable'),
    owned: texts.map((text) => metricSum(text, 'cos_entity_shards_owned')),
  };
}

/**
 * Waits until both replicas own half the entity shards and each knows who owns the other's: a
 * replica learns the owners at the end of each lease round (every second) and its next
 * heartbeat comes after that end, so once each has renewed its heartbeat twice after the split,
 * each has ended a round begun after it. And at least 2.5 s after the split: a replica keeps a
 * newly acquired shard's entities in memory only after two lease rounds.
 */
async function replicasSettle(bench: Bench, twoSchema: string, timeoutMs = 60_000): Promise<void> {
  const { admin } = bench;
  const deadline = Date.now() + timeoutMs;
  const half = ENTITY_SHARDS / 2;
  for (;;) {
    const { owned } = await routing(bench, 'two');
    if (owned.every((n) => n === half)) break;
    if (Date.now() > deadline) throw new Error(`the replicas did not split the ${ENTITY_SHARDS} entity shards: they own ${owned.join('/')}`);
    await sleep(100);
  }
  const split = Date.now();
  const heartbeats = async () =>
    (
      await admin.query<{ owner: string; expires_at: Date }>(
        `select owner, expires_at from ${twoSchema}.cos_stream_members where expires_at > now()`,
      )
    ).rows;
  const first = new Map((await heartbeats()).map((row) => [row.owner, row.expires_at.getTime()]));
  const seen = new Map([...first.keys()].map((owner) => [owner, new Set<number>()]));
  while ([...seen.values()].some((beats) => beats.size < 2) || Date.now() - split < 2500) {
    if (Date.now() > deadline) throw new Error(`the replicas did not renew their heartbeats within ${timeoutMs} ms`);
    await sleep(50);
    for (const row of await heartbeats()) {
      if (row.expires_at.getTime() !== first.get(row.owner)) seen.get(row.owner)?.add(row.expires_at.getTime());
    }
  }
  const { owned } = await routing(bench, 'two');
  if (seen.size !== bench.systems.get('two')!.servers.length || !owned.every((n) => n === half)) {
    throw new Error(`the replicas did not settle: ${seen.size} members, shards owned ${owned.join('/')}`);
  }
  console.error(`replicas: ${owned.join('/')} entity shards owned, ${seen.size} members`);
}

function reportReplicas(bench: Bench, cells: Cell[]): void {
  const { callerCounts, repeats, warmupMs, durationMs, entityCount, keySets, writeDoc, docSection } = bench.options;
  const summary = (system: System, keys: Keys, callers: number) => {
    const mine = cells.filter((c) => c.system === system && c.keys === keys && c.callers === callers);
    return {
      ...repeatMedians(mine),
      forwarded: median(mine.map((c) => c.routing?.forwarded ?? Number.NaN)),
      unreachable: mine.reduce((most, c) => Math.max(most, c.routing?.unreachable ?? 0), 0),
    };
  };
  const ms = latencyMs;
  const share = (v: number) => (Number.isFinite(v) ? `${(100 * v).toFixed(1)}%` : '-');
  const times = (v: number) => `${v.toFixed(2)}x`;
  // which entities, when --keys names more than one set
  const keysNote = (keys: Keys) =>
    keySets.length > 1 ? ` (${keys === 'spread' ? `${entityCount.toLocaleString('en')} entities` : '1 hot entity'})` : '';
  const lines = [
    '| callers | replicas | cmd/s | p50 ms | p99 ms | cos-server CPU ms/cmd | handler CPU ms/cmd | PostgreSQL CPU ms/cmd | forwarded |',
    '|--:|:--|--:|--:|--:|--:|--:|--:|--:|',
  ];
  const ratios: string[] = [];
  let errors = 0;
  for (const keys of keySets) {
    for (const callers of callerCounts) {
      const one = summary('cos', keys, callers);
      const two = summary('two', keys, callers);
      const oneCells = cells.filter((c) => c.system === 'cos' && c.keys === keys && c.callers === callers);
      const twoCells = cells.filter((c) => c.system === 'two' && c.keys === keys && c.callers === callers);
      const ratio = (pick: (cell: Cell) => number) => times(pairedRatio(oneCells, twoCells, pick));
      errors += one.errors + two.errors;
      for (const [name, s] of [['one', one], ['two', two]] as const) {
        lines.push(
          `| ${callers}${keysNote(keys)} | ${name} | ${s.perSecond.toFixed(0)} | ${ms(s.p50)} | ${ms(s.p99)} | ${s.server.toFixed(3)} | ` +
            `${s.handler.toFixed(3)} | ${s.postgres.toFixed(3)} | ${share(s.forwarded)} |`,
        );
      }
      const runs = (s: { runs: number[] }) => s.runs.map((v) => v.toFixed(0)).join(', ');
      // what the cos-server side spends per forwarded command beyond what `one` spends per command
      const perForwarded = (two.server - one.server) / two.forwarded;
      ratios.push(
        `- ${callers} caller${callers === 1 ? '' : 's'}${keysNote(keys)}: two/one throughput ${ratio((c) => c.result.perSecond)} ` +
          `(runs one: ${runs(one)}; two: ${runs(two)}), p50 ${ratio((c) => c.result.p50Ms)}, p99 ${ratio((c) => c.result.p99Ms)}, ` +
          `cos-server CPU per command ${ratio((c) => c.cpu.server)}, handler ${ratio((c) => c.cpu.handler)}, ` +
          `PostgreSQL ${ratio((c) => c.cpu.postgres)}; ${share(two.forwarded)} of the commands forwarded` +
          (Number.isFinite(perForwarded) && two.forwarded > 0 ? `, about ${perForwarded.toFixed(3)} ms more cos-server CPU per forwarded command` : '') +
          (two.unreachable > 0 ? `; **up to ${share(two.unreachable)} handled where they arrived (owner unreachable)**` : ''),
      );
    }
  }
  const half = ENTITY_SHARDS / 2;
  const unsettled = cells.filter((c) => c.system === 'two' && !(c.routing?.owned.every((n) => n === half) ?? false)).length;
  const body = [
    ...lines,
    '',
    ...ratios,
    '',
    `Table: medians of ${repeats} runs. Ratios: the median over the runs of the ratio within each run (one and two ` +
      `measured back to back). Each cell ${warmupMs / 1000} s warm-up then ${durationMs / 1000} s measured; ` +
      `${entityCount.toLocaleString('en')} entities, round robin. Errors in all cells: ${errors}. ` +
      (unsettled === 0
        ? `Each replica owned ${half} of the ${ENTITY_SHARDS} entity shards after every cell.`
        : `**After ${unsettled} of the \`two\` cells the replicas did not own ${half}/${half} shards** (a handover during the run).`),
  ];
  console.log(body.join('\n'));
  if (!writeDoc) return;
  writeSection(docSection, [
    `<!-- ${docSection}:start -->`,
    '## Cost of entity sharding across replicas on ProcessCommand',
    '',
    'Run: `npx nx run @chiefofstate/cos-server:build && npx tsx tools/bench/cos-bench.ts --replicas`',
    '(options: `--duration=5 --warmup=1 --repeats=3 --callers=1,16,64 --entities=10000 --doc-section=replicas`;',
    'PostgreSQL as above).',
    '',
    'The processes of the ProcessCommand benchmark (cos-server against its ceiling), with the ceiling',
    'replaced by two cos-server replicas on one schema of their own (`POD_IP=127.0.0.1`, so each',
    'advertises `127.0.0.1:<COS_PORT>`). **one**: one cos-server, every caller on it, as in that',
    `benchmark. **two**: the two replicas, started one after the other and each owning ${half} of the`,
    `${ENTITY_SHARDS} entity shards (\`cos_entity_shards_owned\`, and two heartbeats each after the split)`,
    'before the cells; the callers are split evenly between their two addresses (caller i on replica',
    'i mod 2; a single caller is on the first) and go round robin over the same entities. A command',
    'that reaches the replica not owning its entity is forwarded once to the owner over gRPC, so',
    'about half are.',
    '"forwarded" is `cos_forwarded_calls_total{method="ProcessCommand",outcome="forwarded"}` of both',
    'replicas over the cell, per command completed in it. The cos-server CPU of **two** is both',
    'replicas\' summed; the last figure of each line below is the extra cos-server CPU per command',
    '(two minus one) divided by the share forwarded. Each side has every entity activated before the',
    'cells; cell after cell, alternating which goes first.',
    '',
    `Machine: ${machineDescription()}.`,
    '',
    'Reading the figures: on this one 2-core machine both replicas, the handler, the load client and',
    'PostgreSQL share the same cores, so a second replica adds no capacity here. What this measures is',
    'what the extra hop costs: a forwarded command is received, routed and sent again by one',
    'replica, then served by the other, so it crosses two cos-server gRPC edges instead of one and',
    'pays another round trip in latency. Each replica also group-commits only its own half of the',
    'commands, so journal transactions carry half as many events (PostgreSQL CPU per command about',
    'doubles), and each process\'s connections to the handler carry half the calls. It does not measure the scaling replicas give on separate',
    'machines, where each has its own cores and the forwarded share is the price of letting any',
    'replica take any call. The machine is shared and noisy: compare the two sides of one run, and',
    'prefer the CPU per command to the throughput.',
    '',
    ...body,
    `<!-- ${docSection}:end -->`,
  ]);
}
