import type { CompiledQuery } from 'kysely';

/**
 * A statement can carry its own client-side deadline as a leading SQL comment, so the bound
 * travels with the statement through Kysely (a transaction's included) to the guarded pool,
 * without an AsyncLocalStorage scope: on Node 20 that turns on promise hooks for the whole
 * process, which cost more CPU per command than the rest of the hardening together.
 */
const PREFIX = '/* cos-deadline:';
const SUFFIX = ' */ ';

/**
 * `sql` bounded on the client side by `deadline` (epoch ms, after which the caller has no use
 * for the answer) as well as by the statement timeout. Undefined or not finite: `sql` as it is.
 */
export function withStatementDeadline(sql: string, deadline: number | undefined): string {
  return deadline !== undefined && Number.isFinite(deadline) ? `${PREFIX}${Math.floor(deadline)}${SUFFIX}${sql}` : sql;
}

/** The deadline withStatementDeadline put on `sql`, undefined when none. */
export function statementDeadlineOf(sql: string): number | undefined {
  if (!sql.startsWith(PREFIX)) return undefined;
  const end = sql.indexOf(SUFFIX, PREFIX.length);
  const deadline = end < 0 ? Number.NaN : Number(sql.slice(PREFIX.length, end));
  return Number.isFinite(deadline) ? deadline : undefined;
}

/**
 * A Kysely query compiled and bounded by `deadline` (see withStatementDeadline), to run with
 * `kysely.executeQuery`: how a read on a caller's behalf gives up when the caller stops waiting.
 */
export function compiledWithDeadline<R>(query: { compile(): CompiledQuery<R> }, deadline: number | undefined): CompiledQuery<R> {
  const compiled = query.compile();
  return deadline !== undefined && Number.isFinite(deadline) ? { ...compiled, sql: withStatementDeadline(compiled.sql, deadline) } : compiled;
}
