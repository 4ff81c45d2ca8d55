import type { EnvReader } from './env-reader.js';
import type { BreakerConfig, HandlerProtocol, KeepaliveConfig } from './types.js';
import { boolean, duration, handlerProtocol, integerIn, MAX_TIMER_MS } from './values.js';

/*
 * The resilience settings of the newest upstream server (extensions.md section 1): how COS calls
 * the write handler (gRPC or HTTP), circuit breakers around handler calls, HTTP/2 keepalive on
 * the outbound gRPC connections, and the write handler's connection pool.
 */

/** COS_WRITE_SIDE_PROTOCOL: `grpc` or `http`; upstream's `both` (or anything else) is a problem. */
export function readWriteSideProtocol(reader: EnvReader): HandlerProtocol {
  const found = reader.lookup('COS_WRITE_SIDE_PROTOCOL');
  if (found !== undefined && found.value.trim().toLowerCase() === 'both') {
    reader.report.problem(
      'COS_WRITE_SIDE_PROTOCOL="both": expected grpc or http (COS calls the write handler one way; both is only a value of COS_SERVER_PROTOCOL)',
    );
    return 'grpc';
  }
  return (found && reader.parse(handlerProtocol, found)) ?? 'grpc';
}

/** COS_GRPC_CLIENT_POOL_SIZE: 1..64 connections to the write handler. */
export function readPoolSize(reader: EnvReader): number {
  return reader.readOr(integerIn(1, 64), 'COS_GRPC_CLIENT_POOL_SIZE', 1);
}

const MAX_FAILURES = integerIn(1, 100);
const CALL_TIMEOUT = duration(1, 300_000, 'a duration of at most 5m, such as 30s or 1m (a bare number is seconds)');
const RESET_TIMEOUT = duration(1000, 3_600_000, 'a duration from 1s to 1h, such as 30s or 1m (a bare number is seconds)');

/** COS_<side>_BREAKER_*: undefined when _ENABLED is not true (the other values are still checked). */
export function readBreaker(reader: EnvReader, side: 'WRITE_SIDE' | 'READ_SIDE', defaultCallTimeoutMs: number): BreakerConfig | undefined {
  const name = (setting: string) => `COS_${side}_BREAKER_${setting}`;
  const enabled = reader.readOr(boolean, name('ENABLED'), false);
  const breaker: BreakerConfig = {
    maxFailures: reader.readOr(MAX_FAILURES, name('MAX_FAILURES'), 5),
    callTimeoutMs: reader.readOr(CALL_TIMEOUT, name('CALL_TIMEOUT'), defaultCallTimeoutMs),
    resetTimeoutMs: reader.readOr(RESET_TIMEOUT, name('RESET_TIMEOUT'), 60_000),
  };
  if (!enabled) {
    for (const setting of ['MAX_FAILURES', 'CALL_TIMEOUT', 'RESET_TIMEOUT']) {
      if (reader.isSet(name(setting))) reader.report.warn(`${name(setting)} is ignored: ${name('ENABLED')} is not true`);
    }
    return undefined;
  }
  return breaker;
}

const KEEPALIVE_DURATION = duration(1000, MAX_TIMER_MS, 'a duration of at least 1s, such as 20s or 2m (a bare number is seconds)');

/** COS_GRPC_KEEPALIVE_*: the values are read (and checked) whether or not it is enabled. */
export function readKeepalive(reader: EnvReader): KeepaliveConfig {
  return {
    enabled: reader.readOr(boolean, 'COS_GRPC_KEEPALIVE_ENABLED', false),
    timeMs: reader.readOr(KEEPALIVE_DURATION, 'COS_GRPC_KEEPALIVE_TIME', 120_000),
    timeoutMs: reader.readOr(KEEPALIVE_DURATION, 'COS_GRPC_KEEPALIVE_TIMEOUT', 60_000),
    withoutCalls: reader.readOr(boolean, 'COS_GRPC_KEEPALIVE_WITHOUT_CALLS', true),
  };
}

/** The gRPC-only settings given while the write handler speaks HTTP: a warning each (they do nothing). */
export function warnGrpcOnly(reader: EnvReader, protocol: HandlerProtocol): void {
  if (protocol !== 'http') return;
  for (const name of ['COS_GRPC_CLIENT_POOL_SIZE']) {
    if (reader.isSet(name)) reader.report.warn(`${name} is ignored for the write handler: COS_WRITE_SIDE_PROTOCOL=http (HTTP handlers use a keep-alive pool)`);
  }
}
