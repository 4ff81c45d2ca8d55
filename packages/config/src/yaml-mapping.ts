import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { showValue, type EnvReader } from './env-reader.js';

/** One YAML document of a read side or publisher: its keys, read as single values. */
export interface YamlMapping {
  readonly record: Record<string, unknown>;
  /** the key's value as text; a list or mapping is reported and marks the mapping invalid */
  scalar(key: string): string | undefined;
  /** a key or value was refused (already reported) */
  invalid: boolean;
}

/**
 * The document as a mapping of only `keys`: anything else (not a mapping: undefined; an
 * unknown key: invalid) is reported at `where`.
 */
export function yamlMapping(content: unknown, where: string, keys: readonly string[], report: EnvReader['report']): YamlMapping | undefined {
  if (typeof content !== 'object' || Array.isArray(content) || content === null) {
    report.problem(`${where}: expected a mapping with keys ${keys.join(', ')}`);
    return undefined;
  }
  const record = content as Record<string, unknown>;
  const mapping: YamlMapping = {
    record,
    invalid: false,
    scalar(key) {
      const value = record[key];
      if (value === undefined || value === null) return undefined;
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
      report.problem(`${where}: ${key} must be a single value, not a list or mapping`);
      mapping.invalid = true;
      return undefined;
    },
  };
  for (const key of Object.keys(record)) {
    if (!keys.includes(key)) {
      report.problem(`${where}: unknown key ${JSON.stringify(key)}: expected only ${keys.join(', ')}`);
      mapping.invalid = true;
    }
  }
  return mapping;
}

/** One non-empty YAML document of a configuration file, with where it is for messages. */
export interface YamlDocument {
  readonly content: unknown;
  /** `<variable> file <file> document <n>` */
  readonly where: string;
}

/**
 * The documents of the YAML file, or the .yaml/.yml files of the directory (sorted by name), that
 * `variable` names (relative to `cwd`). Unreadable paths, files and documents are reported (a
 * problem each) and skipped; so are empty documents (a trailing `---`). `emptyFile`, when given,
 * is the warning for a file without any document (`... file <file> <emptyFile>`).
 */
export function readYamlDocuments(
  reader: EnvReader,
  variable: string,
  cwd: string,
  emptyFile?: string,
): YamlDocument[] {
  const found = reader.lookup(variable);
  if (found === undefined) return [];
  const path = resolve(cwd, found.value.trim());
  let files: string[];
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((entry) => /\.ya?ml$/i.test(entry))
          .sort()
          .map((entry) => join(path, entry))
          .filter((file) => statSync(file).isFile())
      : [path];
    if (files.length === 0) reader.report.warn(`${variable}: directory ${path} holds no .yaml or .yml file`);
  } catch (error) {
    reader.report.problem(`${variable}=${showValue(found.name, found.value)}: expected a readable YAML file or directory (${errorText(error)})`);
    return [];
  }
  return files.flatMap((file) => documentsOf(file, variable, reader, emptyFile));
}

function documentsOf(file: string, variable: string, reader: EnvReader, emptyFile: string | undefined): YamlDocument[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    reader.report.problem(`${variable} file ${file}: expected a readable YAML file (${errorText(error)})`);
    return [];
  }
  const documents = parseAllDocuments(text);
  if (!Array.isArray(documents) || documents.length === 0) {
    if (emptyFile !== undefined) reader.report.warn(`${variable} file ${file} ${emptyFile}`);
    return [];
  }
  const found: YamlDocument[] = [];
  documents.forEach((document, index) => {
    const where = `${variable} file ${file} document ${index + 1}`;
    const [error] = document.errors;
    if (error !== undefined) {
      reader.report.problem(`${where}: expected valid YAML (${error.message.split('\n')[0]})`);
      return;
    }
    const content: unknown = document.toJS();
    // an empty document, e.g. after a trailing `---`
    if (content !== null && content !== undefined) found.push({ content, where });
  });
  return found;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
