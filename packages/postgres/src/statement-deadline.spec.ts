import { describe, expect, it } from 'vitest';
import { statementDeadlineOf, withStatementDeadline } from './statement-deadline.js';

describe('statement deadlines', () => {
  it('travel with the statement and are read back', () => {
    const sql = withStatementDeadline('SELECT 1', 1_733_400_000_123.7);
    expect(sql).toBe('/* cos-deadline:1733400000123 */ SELECT 1');
    expect(statementDeadlineOf(sql)).toBe(1_733_400_000_123);
  });

  it('leave a statement without a finite deadline as it is, and find none in other statements', () => {
    expect(withStatementDeadline('SELECT 1', undefined)).toBe('SELECT 1');
    expect(withStatementDeadline('SELECT 1', Infinity)).toBe('SELECT 1');
    expect(statementDeadlineOf('SELECT 1')).toBeUndefined();
    expect(statementDeadlineOf('/* other */ SELECT 1')).toBeUndefined();
    expect(statementDeadlineOf('/* cos-deadline:soon */ SELECT 1')).toBeUndefined();
  });
});
