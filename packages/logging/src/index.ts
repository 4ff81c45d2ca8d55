export { createLogger, type Logger, type LoggerOptions, type LogLevel, type LogStyle } from './logger.js';
