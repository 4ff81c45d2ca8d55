// A process run by runCosProcess for the tests: FIXTURE_CLOSE=hang makes close never finish,
// FIXTURE_SPAN=<name> records one span once started, and another every FIXTURE_SPANS_EVERY_MS if set.
import { runCosProcess } from '../src/run-cos-process.js';

runCosProcess({
  name: 'fixture',
  env: process.env,
  cwd: process.cwd(),
  shutdownLimitMs: 2_000,
  async start({ config, logger, tracing }) {
    const delay = Number(process.env['FIXTURE_START_MS'] ?? 0);
    if (delay > 0) {
      process.stdout.write('fixture starting slowly\n');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    // stands in for a listening server: it keeps the process alive until closed
    const alive = setInterval(() => {}, 60_000);
    const spanName = process.env['FIXTURE_SPAN'];
    if (spanName !== undefined) tracing.tracer.startSpan(spanName).end();
    const everyMs = Number(process.env['FIXTURE_SPANS_EVERY_MS'] ?? 0);
    const spans = everyMs > 0 && spanName !== undefined ? setInterval(() => tracing.tracer.startSpan(spanName).end(), everyMs) : undefined;
    logger.info({ port: config.server.port }, 'fixture started');
    return {
      close: (graceMs: number) => {
        process.stdout.write(`closing with grace ${graceMs}\n`);
        if (process.env['FIXTURE_CLOSE'] === 'hang') return new Promise<void>(() => {});
        clearInterval(alive);
        clearInterval(spans);
        return Promise.resolve();
      },
    };
  },
});
