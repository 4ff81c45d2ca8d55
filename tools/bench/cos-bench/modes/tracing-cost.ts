// --tracing-cost: the same cos-server with every command traced and exported over OTLP/HTTP to
// a receiver in its own process, against tracing off; the load sends a sampled `traceparent` on
// every call to both. Section `tracing` (--doc-section for another, e.g. tracing-node24).
import { costVerdict } from '../../bench-support.js';
import { start, tsx } from '../processes.js';
import { spanCount, startSecondCos, type Bench, type Cell, type Mode, type SpanCount, type System } from '../run.js';
import { latencyMs, machineDescription, pairedRatio, repeatMedians, writeSection } from '../report-support.js';

export const tracingCostMode: Mode = {
  flag: 'tracing-cost',
  systems: ['cos', 'traced'],
  docSection: 'tracing',
  async start(bench) {
    const receiver = start('otlp-receiver', tsx('otlp-receiver.ts'), {});
    bench.procs.push(receiver);
    const port = Number((await receiver.waitFor(/listening (\d+)/))[1]);
    bench.receiver = { proc: receiver, port };
    await startSecondCos(bench, 'traced', 'traced', { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, ...bench.options.tracedEnv });
  },
  // both servers get the same traceparent on every call; only one records spans
  loadExtras: () => ({ traceparent: true }),
  async report(bench, cells) {
    // A graceful stop flushes the exporter's queue: then every span the traced server made is counted.
    await bench.systems.get('traced')!.servers[0]!.stop();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const counted = await spanCount(bench);
    reportTracing(bench, cells, { ...counted, commands: bench.completedBy.get('traced') ?? 0 });
  },
};

function reportTracing(bench: Bench, cells: Cell[], total: SpanCount & { commands: number }): void {
  const { callerCounts, repeats, warmupMs, durationMs, entityCount, writeDoc, docSection } = bench.options;
  const summary = (system: System, callers: number) => repeatMedians(cells.filter((c) => c.system === system && c.callers === callers));
  const ms = latencyMs;
  const pct = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}%`;
  const lines = [
    '| callers | tracing | cmd/s | p50 ms | p99 ms | cos-server CPU ms/cmd | receiver CPU ms/cmd | spans/cmd |',
    '|--:|:--|--:|--:|--:|--:|--:|--:|',
  ];
  const costs: string[] = [];
  let errors = 0;
  for (const callers of callerCounts) {
    const off = summary('cos', callers);
    const on = summary('traced', callers);
    const offCells = cells.filter((c) => c.system === 'cos' && c.callers === callers);
    const onCells = cells.filter((c) => c.system === 'traced' && c.callers === callers);
    errors += off.errors + on.errors;
    for (const [name, s] of [['off', off], ['on', on]] as const) {
      lines.push(
        `| ${callers} | ${name} | ${s.perSecond.toFixed(0)} | ${ms(s.p50)} | ${ms(s.p99)} | ${s.server.toFixed(3)} | ${name === 'on' ? s.receiver.toFixed(3) : '-'} | ${name === 'on' ? s.spans.toFixed(2) : '-'} |`,
      );
    }
    const cost = 1 - pairedRatio(offCells, onCells, (c) => c.result.perSecond);
    const cpuChange = pairedRatio(offCells, onCells, (c) => c.cpu.server) - 1;
    const runs = (s: { runs: number[] }) => s.runs.map((v) => v.toFixed(0)).join(', ');
    costs.push(
      `- ${callers} caller${callers === 1 ? '' : 's'}: throughput ${pct(-cost)} with tracing on ` +
        `(runs off: ${runs(off)}; on: ${runs(on)}; ratio of the medians ${pct(on.perSecond / off.perSecond - 1)}), ` +
        `p50 ${pct(pairedRatio(offCells, onCells, (c) => c.result.p50Ms) - 1)}, ` +
        `p99 ${pct(pairedRatio(offCells, onCells, (c) => c.result.p99Ms) - 1)}, ` +
        `cos-server CPU per command ${pct(cpuChange)}` +
        (callers >= 16 ? costVerdict({ throughput: -cost, cpu: cpuChange }, 0.15, 'cost under 15%') : ''),
    );
  }
  const body = [
    ...lines,
    '',
    ...costs,
    '',
    `Table: medians of ${repeats} runs. Changes: the median over the runs of the ratio within each run ` +
      `(the two servers of a run measured back to back), which cancels the drift of the shared machine between runs. ` +
      `Each cell ${warmupMs / 1000} s warm-up then ${durationMs / 1000} s measured; ` +
      `${entityCount.toLocaleString('en')} entities, round robin. Errors in all cells: ${errors}.`,
    `Spans received from the traced server over the whole run: ${total.spans.toLocaleString('en')} for ` +
      `${total.commands.toLocaleString('en')} commands (${(total.spans / Math.max(1, total.commands)).toFixed(2)} per command, ` +
      `in ${total.requests.toLocaleString('en')} export requests; ${total.rejected} rejected). Per cell the figure is approximate: the exporter batches.`,
  ];
  console.log(body.join('\n'));
  if (!writeDoc) return;
  writeSection(docSection, [
    `<!-- ${docSection}:start -->`,
    `## Cost of tracing on ProcessCommand, Node ${process.versions.node.split('.')[0]}`,
    '',
    'Run: `npx nx run @chiefofstate/cos-server:build && npx tsx tools/bench/cos-bench.ts --tracing-cost`',
    '(options: `--duration=5 --warmup=1 --repeats=3 --callers=1,16,64 --entities=10000`; PostgreSQL as above).',
    'Every process runs on the Node that runs the script; for another Node put it first on `PATH` and',
    'name a section of its own: `PATH=/opt/node24/bin:$PATH node --import tsx tools/bench/cos-bench.ts',
    '--tracing-cost --doc-section=tracing-node24`.',
    '',
    'The processes of the ProcessCommand benchmark below, with the ceiling replaced by a second',
    'cos-server that has tracing on: `OTEL_EXPORTER_OTLP_ENDPOINT` names an OTLP/HTTP receiver in its',
    'own process (tools/bench/cos-bench/otlp-receiver.ts: a node HTTP server that decodes each export',
    'request, protobuf or JSON, counts its spans and answers 200), so every span goes through the real',
    'exporter (COS\'s default: OTLP/protobuf over HTTP, `createOtlpSpanProcessor` with the default',
    'batch settings). The load client sends a fresh',
    'sampled `traceparent` on every call to both servers, so on the traced one every command is',
    'recorded and exported (server span, `cos.entity.command`, two handler client spans, and a',
    'linked `cos.journal.batch` per journal transaction), and the untraced',
    'one receives the same headers. The two servers run side by side (own schemas), cell after cell,',
    'alternating which goes first; each has every entity activated before the cells.',
    '',
    `Machine: ${machineDescription()}. All processes share the two cores with whatever else runs there; the`,
    'receiver\'s CPU is part of what the traced cells compete with, as a collector on the same host would be.',
    '',
    ...body,
    '',
    'Where the cost goes: with every command traced, cos-server makes four spans per command (server,',
    '`cos.entity.command`, two handler calls) plus a share of one `cos.journal.batch` per journal',
    'transaction, and exports them. Changed for this, each measured with this script: (1) no context',
    'manager: COS passes the trace context explicitly, because on Node 20 the AsyncLocalStorage',
    'manager\'s promise hooks cost about 0.12 ms per command by themselves (a sixth of cos-server\'s',
    'CPU; an always-off sampler showed it); (2) OTLP protobuf instead of JSON, the OpenTelemetry',
    'default: 2.5 times fewer bytes, the receiver\'s CPU per command from 0.045 ms to 0.012 ms; (3) no',
    'span per journal append (the batch span is the journal write, linked both ways with the command',
    'spans), a fifth fewer spans; (4) COS\'s own span processor instead of the SDK\'s',
    '`BatchSpanProcessor` and `OTLPTraceExporter` (section "Exporting spans" below): with those, two',
    'fifths of the CPU tracing added was their OTLP encoding (a two-pass serializer and an array per',
    'id) and each batch kept 512 span objects alive; COS\'s encodes each span once as it ends, byte for',
    'byte the same, and queues bytes. On 2026-11-26, before (4), the same script measured -12.0%,',
    '-14.2% and -12.5% throughput at 1, 16 and 64 callers on Node 20 (CPU per command +18% to',
    '+25%), and -8.3%, -10.6% and -20.2% in one run on Node 24. What remains, taken apart on Node 24',
    'with `--traced-env=OTEL_TRACES_SAMPLER=always_off` (the SDK installed and the caller\'s context',
    'continued, nothing recorded): that costs +5% to +11% CPU per command; recording and exporting',
    'the spans the rest, about 0.1 ms per command in the server, where the same spans made and',
    'encoded in a loop take 0.014 ms (section "Exporting spans"). The machine is noisy: the untraced cell of one run moves by a third',
    'between repeats, so a difference of a few points between two runs means nothing. With spare CPU',
    '(1 and 16 callers) tracing shows as latency; when the cores are saturated its CPU is the',
    'throughput cost. To trace less, sample: `OTEL_TRACES_SAMPLER=parentbased_traceidratio` with',
    '`OTEL_TRACES_SAMPLER_ARG`, or callers that sample fewer requests. No spans were dropped: every',
    'traced cell received at least four per command (the batch span is shared by the commands of one',
    'journal transaction).',
    `<!-- ${docSection}:end -->`,
  ]);
}
