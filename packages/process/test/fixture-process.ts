// A process run by runCosProcess for the tests: FIXTURE_CLOSE=hang makes close never finish.
import { runCosProcess } from '../src/run-cos-process.js';

runCosProcess({
  name: 'fixture',
  env: process.env,
  cwd: process.cwd(),
  shutdownLimitMs: 2_000,
  async start({ config, logger }) {
    logger.info({ port: config.server.port }, 'fixture started');
    return {
      close: (graceMs: number) => {
        process.stdout.write(`closing with grace ${graceMs}\n`);
        return process.env['FIXTURE_CLOSE'] === 'hang' ? new Promise<void>(() => {}) : Promise.resolve();
      },
    };
  },
});
