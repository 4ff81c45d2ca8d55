import { pino, type DestinationStream, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type { Logger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export type LogStyle = 'JSON' | 'SIMPLE';

export interface LoggerOptions {
  readonly level: LogLevel;
  /** JSON lines (default) or human-readable lines */
  readonly style?: LogStyle;
  /** service name on every line (COS_SERVICE_NAME) */
  readonly name: string;
  /** extra fields merged into each line, e.g. the active trace and span ids */
  readonly mixin?: () => Record<string, unknown>;
  /** where lines go; stdout by default */
  readonly destination?: DestinationStream;
}

/** A pino logger configured from LOG_LEVEL / LOG_STYLE. */
export function createLogger(options: LoggerOptions): Logger {
  const destination =
    options.destination ??
    (options.style === 'SIMPLE'
      ? PinoPretty({ colorize: process.stdout.isTTY ?? false, translateTime: 'SYS:standard', ignore: 'pid,hostname' })
      : pino.destination({ sync: false }));
  return pino(
    {
      name: options.name,
      level: options.level,
      ...(options.mixin ? { mixin: options.mixin } : {}),
      // Error objects under `err` keep their stack and cause.
      serializers: { err: pino.stdSerializers.err },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
