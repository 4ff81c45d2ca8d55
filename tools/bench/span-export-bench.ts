/**
 * What exporting COS's spans costs in CPU, per command, in one process: the spans cos-server makes
 * for a traced ProcessCommand (a server span, `cos.entity.command`, two handler client spans, and
 * one `cos.journal.batch` per 16 commands, linked both ways), made with the real SDK, and then:
 *   - none:   not exported (a processor that does nothing): the cost of making them;
 *   - stock:  the SDK's BatchSpanProcessor with the encoding OTLPTraceExporter does before it
 *             sends (@opentelemetry/otlp-transformer's ProtobufTraceSerializer);
 *   - cos:    @chiefofstate/tracing's createOtlpSpanProcessor, which encodes each span as it ends.
 * Neither sends anything: the HTTP transport is the same stock one in both, so it is left out.
 * Variants alternate within each run; medians over the runs. Writes the table to
 * docs/benchmarks.md between <!-- span-export:start --> and <!-- span-export:end --> unless
 * --no-write.
 *
 *   npx tsx tools/bench/span-export-bench.ts [--commands=100000] [--repeats=5] [--no-write]
 */
import type { Span } from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { benchArgs, median, writeBenchmarkSection } from './bench-support.js';
import { rerunWithSources } from './with-sources.js';

rerunWithSources(import.meta.url);

const { ROOT_CONTEXT, SpanKind, TraceFlags, trace } = await import('@opentelemetry/api');
const { ExportResultCode } = await import('@opentelemetry/core');
const { ProtobufTraceSerializer } = await import('@opentelemetry/otlp-transformer');
const { resourceFromAttributes } = await import('@opentelemetry/resources');
const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
const { createOtlpSpanProcessor } = await import('@chiefofstate/tracing');

const args = benchArgs();
const commands = Number(args.get('commands') ?? 100_000);
const repeats = Number(args.get('repeats') ?? 5);
const writeDoc = !args.has('no-write');

type Variant = 'none' | 'stock' | 'cos';
const VARIANTS: readonly Variant[] = ['none', 'stock', 'cos'];
const BATCH = { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 5000, exportTimeoutMillis: 30_000 };

function processorFor(variant: Variant): SpanProcessor {
  switch (variant) {
    case 'none':
      return { onStart() {}, onEnd() {}, forceFlush: async () => {}, shutdown: async () => {} };
    case 'stock':
      return new BatchSpanProcessor(
        {
          export(spans, done) {
            ProtobufTraceSerializer.serializeRequest(spans);
            done({ code: ExportResultCode.SUCCESS });
          },
          shutdown: async () => {},
        },
        BATCH,
      );
    case 'cos':
      return createOtlpSpanProcessor({
        send: async () => {},
        maxQueueSize: BATCH.maxQueueSize,
        maxExportBatchSize: BATCH.maxExportBatchSize,
        scheduleDelayMs: BATCH.scheduledDelayMillis,
      });
  }
}

const hex = (length: number) => {
  let id = '';
  for (let i = 0; i < length; i++) id += ((Math.random() * 16) | 0).toString(16);
  return id;
};

/** CPU µs per command for `commands` traced commands, yielding to the event loop as a server would. */
async function run(variant: Variant): Promise<number> {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'chief-of-state' }),
    spanProcessors: [processorFor(variant)],
  });
  const tracer = provider.getTracer('chiefofstate');
  // the callers' trace ids, made before timing
  const parents = Array.from({ length: 1024 }, () =>
    trace.setSpanContext(ROOT_CONTEXT, { traceId: hex(32), spanId: hex(16), traceFlags: TraceFlags.SAMPLED, isRemote: true }),
  );
  let journal: Span[] = [];
  const started = process.cpuUsage();
  for (let i = 0; i < commands; i++) {
    const server = tracer.startSpan(
      'chief_of_state.v1.ChiefOfStateService/ProcessCommand',
      {
        kind: SpanKind.SERVER,
        attributes: { 'rpc.system': 'grpc', 'rpc.service': 'chief_of_state.v1.ChiefOfStateService', 'rpc.method': 'ProcessCommand' },
      },
      parents[i % parents.length],
    );
    const serverContext = trace.setSpan(ROOT_CONTEXT, server);
    const entity = tracer.startSpan('cos.entity.command', { attributes: { 'cos.entity_id': `entity-${i % 10_000}` } }, serverContext);
    const entityContext = trace.setSpan(serverContext, entity);
    for (const method of ['HandleCommand', 'HandleEvent']) {
      const call = tracer.startSpan(
        `chief_of_state.v1.WriteSideHandlerService/${method}`,
        {
          kind: SpanKind.CLIENT,
          attributes: { 'rpc.system': 'grpc', 'rpc.service': 'chief_of_state.v1.WriteSideHandlerService', 'rpc.method': method },
        },
        entityContext,
      );
      call.setAttribute('rpc.grpc.status_code', 0);
      call.end();
    }
    journal.push(entity);
    if (journal.length === 16) {
      const batch = tracer.startSpan('cos.journal.batch', {
        root: true,
        links: journal.map((span) => ({ context: span.spanContext() })),
        attributes: { 'cos.journal.batch_events': 16, 'cos.journal.batch_appends': 16 },
      });
      for (const span of journal) {
        span.setAttribute('cos.journal.batch_span_id', batch.spanContext().spanId);
        span.addLink({ context: batch.spanContext() });
        span.end();
      }
      batch.end();
      journal = [];
    }
    server.setAttribute('rpc.grpc.status_code', 0);
    server.end();
    if (i % 64 === 63) await new Promise((resolve) => setImmediate(resolve));
  }
  await provider.forceFlush();
  const used = process.cpuUsage(started);
  await provider.shutdown();
  return (used.user + used.system) / commands;
}

const results = new Map<Variant, number[]>(VARIANTS.map((variant) => [variant, []]));
await run('cos'); // warm-up: JIT, buffers
await run('stock');
for (let repeat = 0; repeat < repeats; repeat++) {
  const order = repeat % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
  for (const variant of order) {
    const micros = await run(variant);
    results.get(variant)!.push(micros);
    console.log(`#${repeat + 1} ${variant.padEnd(5)} ${micros.toFixed(1)} µs CPU per command`);
  }
}

const base = median(results.get('none')!);
const rows = VARIANTS.map((variant) => {
  const total = median(results.get(variant)!);
  return { variant, total, export: total - base };
});
const stockExport = rows.find((row) => row.variant === 'stock')!.export;
const table = [
  '| spans | CPU µs per command | of which exporting | exporting vs stock |',
  '|:--|--:|--:|--:|',
  ...rows.map(
    (row) =>
      `| ${{ none: 'made, not exported', stock: 'stock BatchSpanProcessor + serializer', cos: 'createOtlpSpanProcessor' }[row.variant]} ` +
      `| ${row.total.toFixed(1)} | ${row.variant === 'none' ? '-' : row.export.toFixed(1)} ` +
      `| ${row.variant === 'none' ? '-' : `${(row.export / stockExport).toFixed(2)}x`} |`,
  ),
];
console.log(['', ...table].join('\n'));

if (writeDoc) {
  const section = [
    '<!-- span-export:start -->',
    '## Exporting spans: COS\'s processor against the stock one',
    '',
    `Run: \`npx tsx tools/bench/span-export-bench.ts\` (options: \`--commands=${commands} --repeats=${repeats}\`), Node ${process.version}.`,
    '',
    'In one process, the spans cos-server makes for each traced ProcessCommand (server span,',
    '`cos.entity.command`, two handler client spans, one `cos.journal.batch` per 16 commands linked',
    'both ways), made with the real SDK, then not exported, exported by the SDK\'s',
    '`BatchSpanProcessor` with the encoding its `OTLPTraceExporter` does (`ProtobufTraceSerializer`),',
    'or by `createOtlpSpanProcessor` (@chiefofstate/tracing), which encodes each span as it ends.',
    'Nothing is sent: both use the same stock HTTP transport, left out here. The variants alternate',
    `within each run; medians of ${repeats} runs of ${commands.toLocaleString('en')} commands.`,
    '',
    ...table,
    '<!-- span-export:end -->',
  ];
  writeBenchmarkSection('span-export', section.join('\n'));
}
