/**
 * A Dockerfile parser for the subset the images here use: parser directives, comments, line
 * continuations, stages, flags (`--from=`, `--mount=`, `--interval=`) and the JSON (exec) form.
 * No variable substitution: callers see the text as written.
 */

export interface DockerInstruction {
  /** upper case: FROM, RUN, COPY, ... */
  readonly keyword: string;
  /** the arguments after the flags, continuation lines joined with a space */
  readonly args: string;
  /** leading `--name=value` flags */
  readonly flags: Readonly<Record<string, string>>;
  /** the exec form, when the arguments are a JSON array of strings */
  readonly exec?: readonly string[];
  /** 1-based line where the instruction starts */
  readonly line: number;
}

export interface DockerStage {
  /** the image or stage it starts from */
  readonly from: string;
  readonly name?: string;
  /** the instructions after FROM, in order */
  readonly instructions: readonly DockerInstruction[];
}

export interface Dockerfile {
  /** parser directives such as `syntax` */
  readonly directives: Readonly<Record<string, string>>;
  /** ARGs before the first FROM */
  readonly globalArgs: readonly DockerInstruction[];
  readonly stages: readonly DockerStage[];
}

const FLAGGED = new Set(['FROM', 'COPY', 'ADD', 'RUN', 'HEALTHCHECK']);

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split(/\r?\n/);
  const directives: Record<string, string> = {};
  let index = 0;
  // Directives are `# key=value` comments before anything else.
  for (; index < lines.length; index++) {
    const match = /^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(lines[index]!);
    if (!match) break;
    directives[match[1]!.toLowerCase()] = match[2]!;
  }
  if (directives['escape'] && directives['escape'] !== '\\') throw new Error('only the \\ escape character is supported');

  const instructions: DockerInstruction[] = [];
  while (index < lines.length) {
    const raw = lines[index]!;
    const start = index + 1;
    index++;
    if (/^\s*(#|$)/.test(raw)) continue;
    let text = raw;
    // Continuations: a trailing backslash joins the next line; comment lines inside are dropped.
    while (/\\\s*$/.test(text) && index < lines.length) {
      text = text.replace(/\s*\\\s*$/, ' ');
      const next = lines[index]!;
      index++;
      if (/^\s*#/.test(next)) {
        text += '\\';
        continue;
      }
      text += next.trim();
    }
    instructions.push(parseInstruction(text.trim(), start));
  }

  const globalArgs: DockerInstruction[] = [];
  const stages: { from: string; name?: string; instructions: DockerInstruction[] }[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const match = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      if (!match) throw new Error(`line ${instruction.line}: cannot read FROM ${instruction.args}`);
      stages.push({ from: match[1]!, ...(match[2] ? { name: match[2] } : {}), instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== 'ARG') throw new Error(`line ${instruction.line}: ${instruction.keyword} before FROM`);
      globalArgs.push(instruction);
    } else {
      stages[stages.length - 1]!.instructions.push(instruction);
    }
  }
  if (stages.length === 0) throw new Error('no FROM');
  return { directives, globalArgs, stages };
}

function parseInstruction(text: string, line: number): DockerInstruction {
  const match = /^(\S+)\s*([\s\S]*)$/.exec(text)!;
  const keyword = match[1]!.toUpperCase();
  let rest = match[2]!;
  const flags: Record<string, string> = {};
  if (FLAGGED.has(keyword)) {
    for (;;) {
      const flag = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest);
      if (!flag) break;
      flags[flag[1]!] = flag[2] ?? 'true';
      rest = rest.slice(flag[0].length);
    }
  }
  const exec = parseExecForm(rest);
  return { keyword, args: rest.trim(), flags, ...(exec ? { exec } : {}), line };
}

function parseExecForm(args: string): string[] | undefined {
  // HEALTHCHECK's arguments start with CMD; its exec form follows that word.
  const trimmed = args.trim();
  if (!trimmed.startsWith('[')) return undefined;
  try {
    const value: unknown = JSON.parse(trimmed);
    return Array.isArray(value) && value.every((item) => typeof item === 'string') ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Splits shell-like words, honouring single and double quotes and backslashes. */
export function shellWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (quote) {
      if (char === quote) quote = undefined;
      else if (char === '\\' && quote === '"' && i + 1 < text.length) word += text[++i];
      else word += char;
    } else if (char === '"' || char === "'") {
      quote = char;
      inWord = true;
    } else if (char === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += char;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} in ${text}`);
  if (inWord) words.push(word);
  return words;
}

/** The variables a stage's ENV instructions set, in order (`ENV A=1 B=2` and `ENV A 1`). */
export function stageEnv(stage: DockerStage): Map<string, string> {
  const env = new Map<string, string>();
  for (const instruction of stage.instructions.filter((item) => item.keyword === 'ENV')) {
    const words = shellWords(instruction.args);
    if (words.length > 0 && !words[0]!.includes('=')) {
      const [name, ...value] = instruction.args.split(/\s+/);
      env.set(name!, value.join(' '));
      continue;
    }
    for (const word of words) {
      const at = word.indexOf('=');
      if (at <= 0) throw new Error(`line ${instruction.line}: cannot read ENV ${instruction.args}`);
      env.set(word.slice(0, at), word.slice(at + 1));
    }
  }
  return env;
}

export interface HealthCheck {
  readonly options: Readonly<Record<string, string>>;
  /** the command: the exec form as given, or ['/bin/sh', '-c', text] for the shell form */
  readonly command: readonly string[];
  readonly shellForm: boolean;
}

/** The stage's last HEALTHCHECK (the one that counts), or undefined when none or NONE. */
export function stageHealthCheck(stage: DockerStage): HealthCheck | undefined {
  const instruction = stage.instructions.filter((item) => item.keyword === 'HEALTHCHECK').at(-1);
  if (!instruction || /^NONE$/i.test(instruction.args)) return undefined;
  const match = /^CMD\s+([\s\S]+)$/i.exec(instruction.args);
  if (!match) throw new Error(`line ${instruction.line}: HEALTHCHECK without CMD`);
  const exec = parseExecForm(match[1]!);
  return exec
    ? { options: instruction.flags, command: exec, shellForm: false }
    : { options: instruction.flags, command: ['/bin/sh', '-c', match[1]!], shellForm: true };
}

/** Ports of EXPOSE instructions (`9000`, `9000/tcp`). */
export function stageExposedPorts(stage: DockerStage): number[] {
  return stage.instructions
    .filter((item) => item.keyword === 'EXPOSE')
    .flatMap((item) => item.args.split(/\s+/))
    .map((port) => Number(port.replace(/\/(tcp|udp)$/, '')));
}

/** The user the stage ends with (USER), or undefined for the image's default (root). */
export function stageUser(stage: DockerStage): string | undefined {
  return stage.instructions.filter((item) => item.keyword === 'USER').at(-1)?.args;
}

/** The last instruction with this keyword. */
export function lastInstruction(stage: DockerStage, keyword: string): DockerInstruction | undefined {
  return stage.instructions.filter((item) => item.keyword === keyword).at(-1);
}
