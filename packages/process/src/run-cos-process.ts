import { loadConfig, redactConfig, type CosConfig } from '@chiefofstate/config';
import { ConfigError } from '@chiefofstate/core';
import { createLogger, type Logger } from '@chiefofstate/logging';
import { createTracing, type OtlpExportFailure, type Tracing } from '@chiefofstate/tracing';

/** What a process runs: anything that can be closed within a grace period. */
export interface Closeable {
  close(graceMs: number): Promise<void>;
}

export interface RunCosProcessOptions<T extends Closeable> {
  /** the process name in messages, e.g. `chief-of-state` */
  readonly name: string;
  /** the environment configuration is read from */
  readonly env: Record<string, string | undefined>;
  readonly cwd: string;
  /** starts the process's work from the loaded configuration */
  start(context: { config: CosConfig; logger: Logger; tracing: Tracing }): Promise<T>;
  /** SIGTERM to exit, at most; default 10 s */
  readonly shutdownLimitMs?: number;
}

/**
 * The life of a COS process: configuration from the environment (a bad one exits with status 2
 * and one message listing every problem), tracing and logs set up, `start`, then SIGTERM or
 * SIGINT close it and exit 0, within the limit whatever happens.
 */
export function runCosProcess<T extends Closeable>(options: RunCosProcessOptions<T>): void {
  const limitMs = options.shutdownLimitMs ?? 10_000;
  run(options, limitMs).catch((error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`${options.name}: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(
      `${options.name} failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  });
}

async function run<T extends Closeable>(options: RunCosProcessOptions<T>, limitMs: number): Promise<void> {
  const { config, warnings } = loadConfig({ env: options.env, cwd: options.cwd });
  // The logger needs tracing (for the ids on its lines) and tracing reports through the logger:
  // export problems are told to this, which logs once the logger exists.
  const exportProblems = createExportProblemLog();
  const tracing = createTracing({
    serviceName: config.telemetry.serviceName,
    teamName: config.telemetry.teamName,
    tracesEndpoint: config.telemetry.tracesEndpoint,
    protocol: config.telemetry.tracesProtocol,
    sampler: config.telemetry.tracesSampler,
    batch: config.telemetry.tracesBatch,
    onExportFailure: exportProblems.failed,
    onDropped: exportProblems.dropped,
  });
  const logger = createLogger({
    level: config.log.level,
    style: config.log.style,
    name: config.telemetry.serviceName,
    mixin: tracing.logFields,
  });
  exportProblems.logTo(logger);
  for (const warning of warnings) logger.warn(warning);
  logger.info(
    { config: redactConfig(config), tracing: tracing.enabled ? config.telemetry.tracesEndpoint : 'off' },
    `starting ${options.name}`,
  );
  // Signals are taken from the start: one that arrives while starting stops the process as
  // soon as it is up, instead of killing it half-started.
  let running: T | undefined = undefined;
  let requested: string | undefined;
  const stop = (signal: string) => {
    if (running === undefined) {
      requested ??= signal;
      return;
    }
    logger.info({ signal }, 'stopping');
    // Not unref'd: a close that hangs must end in status 1, even when nothing else holds the
    // event loop open (a finished shutdown exits explicitly, so this never delays it).
    setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      logger.flush(() => process.exit(1));
      setTimeout(() => process.exit(1), 200).unref();
    }, limitMs);
    running
      .close(limitMs - 1_000)
      .then(() => tracing.shutdown())
      .then(() => new Promise<void>((resolve) => logger.flush(() => resolve())))
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  running = await options.start({ config, logger, tracing });
  if (requested !== undefined) stop(requested);
}

/** A collector that is down must show in the logs, but as one warning a minute, not one per export. */
const EXPORT_PROBLEM_INTERVAL_MS = 60_000;

function createExportProblemLog() {
  let logger: Logger | undefined;
  let lastLogged = -Infinity;
  let failures = 0;
  let lostSpans = 0;
  let droppedSpans = 0;
  let lastError: Error | undefined;
  const maybeLog = () => {
    const now = Date.now();
    if (logger === undefined || now - lastLogged < EXPORT_PROBLEM_INTERVAL_MS) return;
    lastLogged = now;
    logger.warn(
      { failed_exports: failures, lost_spans: lostSpans, dropped_spans: droppedSpans, err: lastError },
      'trace export is failing: spans are being lost (counts since the last such warning)',
    );
    failures = lostSpans = droppedSpans = 0;
  };
  return {
    logTo(to: Logger) {
      logger = to;
    },
    failed(failure: OtlpExportFailure) {
      failures++;
      lostSpans += failure.spans;
      lastError = failure.error;
      maybeLog();
    },
    dropped(spans: number) {
      droppedSpans += spans;
      maybeLog();
    },
  };
}
