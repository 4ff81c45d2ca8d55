/**
 * The logging every package asks for, as the composition root provides it, in pino's argument
 * order: `logger.warn({ entityId, err }, 'message')`, or `logger.warn('message')` alone. A pino
 * logger (@chiefofstate/logging) fits as it is. Call the methods on the logger: pino's need
 * their `this`.
 */
export interface Logger {
  debug(fieldsOrMessage: object | string, message?: string): void;
  info(fieldsOrMessage: object | string, message?: string): void;
  warn(fieldsOrMessage: object | string, message?: string): void;
  error(fieldsOrMessage: object | string, message?: string): void;
}

/** Writes nothing: the default where logging is optional. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
