/**
 * What a failed statement tells about the connection and about the statement's outcome. pg
 * reports a server's answer with a five-character SQLSTATE in `code`; a lost connection, a
 * socket error or our own client-side timeout come without one (or with a Node errno code).
 */

/** The SQLSTATE of a server's answer, undefined for anything else (socket errors, timeouts). */
export function sqlState(error: unknown): string | undefined {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** SQLSTATE 23505: a unique constraint refused the row (the same code on pg and PGlite). */
export function isUniqueViolation(error: unknown): boolean {
  return sqlState(error) === '23505';
}

/** SQLSTATE 57014 query_canceled: statement_timeout fired on the server, which rolled the statement back. */
export function isStatementTimeout(error: unknown): boolean {
  return sqlState(error) === '57014';
}

/**
 * The connection is gone or must not be used again: no SQLSTATE (socket closed, reset, our own
 * timeout), class 08 (connection exception), 57P01-57P03 (the server is shutting down or
 * starting), or 25006 (read_only_sql_transaction: the primary became a replica).
 */
export function isConnectionFailure(error: unknown): boolean {
  const code = sqlState(error);
  if (code === undefined) return true;
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '25006';
}

const outcomeUnknown = new WeakSet<object>();

/** Marks an error as "the statement was sent and its answer never came". */
export function markOutcomeUnknown(error: unknown): void {
  if (typeof error === 'object' && error !== null) outcomeUnknown.add(error);
}

/**
 * Whether a failed statement may nevertheless have committed: it was sent, and the connection
 * was lost or timed out on our side before the answer came. Errors the server answered with
 * (statement_timeout included) and failures before sending (no connection, pool exhausted,
 * store known down) mean it did not run.
 */
export function isOutcomeUnknown(error: unknown): boolean {
  // the error itself only: a later failure caused by the same lost connection sent nothing
  return typeof error === 'object' && error !== null && outcomeUnknown.has(error);
}
