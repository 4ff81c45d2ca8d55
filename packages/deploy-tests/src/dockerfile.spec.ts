import { describe, expect, it } from 'vitest';
import { parseDockerfile, shellWords, stageEnv, stageExposedPorts, stageHealthCheck, stageUser } from './dockerfile.js';

const TEXT = `# syntax=docker/dockerfile:1
# escape=\\
# a comment, not a directive: directives end at the first other line
ARG BASE=node:24-slim

FROM \${BASE} AS build
RUN --mount=type=cache,target=/root/.npm npm ci \\
  # a comment inside a continuation is dropped
  --no-audit \\
  --no-fund
COPY --from=other --chown=node:node /a/ ./b/

from scratch
ENV A=1 B="two words" C=x\\ y
ENV LEGACY value with spaces
EXPOSE 9000 9102/tcp
USER node
HEALTHCHECK --interval=10s CMD ["node", "/app/h.mjs", "--port", "9000"]
CMD ["node", "main.js"]
`;

describe('parseDockerfile', () => {
  const file = parseDockerfile(TEXT);

  it('reads directives, global ARGs and stages', () => {
    expect(file.directives).toEqual({ syntax: 'docker/dockerfile:1', escape: '\\' });
    expect(file.globalArgs.map((item) => item.args)).toEqual(['BASE=node:24-slim']);
    expect(file.stages.map((stage) => [stage.from, stage.name])).toEqual([
      ['${BASE}', 'build'],
      ['scratch', undefined],
    ]);
  });

  it('joins continuations, drops comments inside them, and reads flags', () => {
    const [run, copy] = file.stages[0]!.instructions;
    expect(run).toMatchObject({
      keyword: 'RUN',
      flags: { mount: 'type=cache,target=/root/.npm' },
      args: 'npm ci --no-audit --no-fund',
      line: 7,
    });
    expect(copy).toMatchObject({ keyword: 'COPY', flags: { from: 'other', chown: 'node:node' }, args: '/a/ ./b/' });
  });

  it('reads ENV in both forms, EXPOSE, USER, the exec form and HEALTHCHECK', () => {
    const stage = file.stages[1]!;
    expect([...stageEnv(stage)]).toEqual([
      ['A', '1'],
      ['B', 'two words'],
      ['C', 'x y'],
      ['LEGACY', 'value with spaces'],
    ]);
    expect(stageExposedPorts(stage)).toEqual([9000, 9102]);
    expect(stageUser(stage)).toBe('node');
    expect(stage.instructions.at(-1)!.exec).toEqual(['node', 'main.js']);
    expect(stageHealthCheck(stage)).toEqual({
      options: { interval: '10s' },
      command: ['node', '/app/h.mjs', '--port', '9000'],
      shellForm: false,
    });
  });

  it('reads a shell-form HEALTHCHECK and NONE', () => {
    const shell = parseDockerfile('FROM a\nHEALTHCHECK CMD node h.mjs --port "${PORT:-1}" || exit 1\n').stages[0]!;
    expect(stageHealthCheck(shell)).toEqual({
      options: {},
      command: ['/bin/sh', '-c', 'node h.mjs --port "${PORT:-1}" || exit 1'],
      shellForm: true,
    });
    expect(stageHealthCheck(parseDockerfile('FROM a\nHEALTHCHECK NONE\n').stages[0]!)).toBeUndefined();
    expect(stageHealthCheck(parseDockerfile('FROM a\n').stages[0]!)).toBeUndefined();
  });

  it('refuses what it cannot read', () => {
    expect(() => parseDockerfile('RUN x\n')).toThrow(/RUN before FROM/);
    expect(() => parseDockerfile('# nothing\n')).toThrow(/no FROM/);
    expect(() => parseDockerfile('# escape=`\nFROM a\n')).toThrow(/escape/);
    expect(() => parseDockerfile('FROM a b c\n')).toThrow(/cannot read FROM/);
    expect(() => stageHealthCheck(parseDockerfile('FROM a\nHEALTHCHECK --interval=1s\n').stages[0]!)).toThrow(/without CMD/);
  });
});

describe('shellWords', () => {
  it('splits on blanks and honours quotes and backslashes', () => {
    expect(shellWords(`a  "b c" 'd "e"' f\\ g "h\\"i" ''`)).toEqual(['a', 'b c', 'd "e"', 'f g', 'h"i', '']);
  });
  it('refuses an unterminated quote', () => {
    expect(() => shellWords('a "b')).toThrow(/unterminated/);
  });
});
