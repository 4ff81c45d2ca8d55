import { Writable } from 'node:stream';
import type { Logger } from '@chiefofstate/core';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { lines, destination };
}

describe('createLogger', () => {
  it('writes JSON lines with the level label, name and mixin fields', () => {
    const { lines, destination } = capture();
    const logger = createLogger({ level: 'info', name: 'chiefofstate', destination, mixin: () => ({ trace_id: 'abc' }) });
    logger.debug('hidden');
    logger.info({ entityId: 'a' }, 'hello');
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ level: 'info', name: 'chiefofstate', msg: 'hello', entityId: 'a', trace_id: 'abc' });
  });

  it('serializes errors with message and stack', () => {
    const { lines, destination } = capture();
    createLogger({ level: 'trace', name: 'x', destination }).error({ err: new Error('boom') }, 'failed');
    const line = JSON.parse(lines[0]!);
    expect(line.err.message).toBe('boom');
    expect(line.err.stack).toContain('Error: boom');
  });

  it("is @chiefofstate/core's Logger as it is: fields first, or a message alone", () => {
    const { lines, destination } = capture();
    const logger: Logger = createLogger({ level: 'info', name: 'x', destination });
    logger.warn({ entityId: 'a' }, 'fields first');
    logger.info('message alone');
    expect(lines.map((line) => JSON.parse(line))).toMatchObject([
      { level: 'warn', msg: 'fields first', entityId: 'a' },
      { level: 'info', msg: 'message alone' },
    ]);
  });
});
