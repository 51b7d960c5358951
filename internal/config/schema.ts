// A small schema engine for the two TOML files: every value is checked against a
// declared key, so every error can name the file, the key and its line.
import { readFileSync } from "node:fs";
import { parseDuration, timerDurationProblem } from "../timers/duration.js";
import { EnvironmentError, fileReadReason } from "../errors/errors.js";
import type { KeySpec, SectionSpec } from "../settings/spec.js";
import { parseToml } from "./toml.cjs";

export class ConfigError extends EnvironmentError {
  constructor(
    readonly file: string,
    readonly key: string | undefined,
    readonly line: number | undefined,
    readonly reason: string,
    readonly column?: number,
  ) {
    const where = line === undefined ? file : column === undefined ? `${file}:${line}` : `${file}:${line}:${column}`;
    super(key ? `${where}: ${key}: ${reason}` : `${where}: ${reason}`);
    this.name = "ConfigError";
  }
}

type Parsed = Record<string, unknown>;

/** Where things are in a TOML file, found by reading its lines; the parser gives positions only for syntax errors. */
export class SourceMap {
  private readonly lines: string[];
  constructor(text: string) {
    this.lines = text.split(/\r?\n/);
  }
  /** 1-based line of `key` inside table `table` ("" for the top level), or of the table header when key is omitted. */
  lineOf(table: string, key?: string): number | undefined {
    let current = "";
    // The n-th (from 0) `[[name]]` header is table `name[n]`.
    const seen = new Map<string, number>();
    for (let i = 0; i < this.lines.length; i++) {
      const line = this.lines[i].trim();
      const header = /^(\[\[?)\s*([^\]]+?)\s*\]\]?/.exec(line);
      if (header) {
        current = header[2].replace(/\s*\.\s*/g, ".").replace(/"/g, "");
        if (header[1] === "[[") {
          const n = seen.get(current) ?? 0;
          seen.set(current, n + 1);
          current = `${current}[${n}]`;
        }
        if (key === undefined && current === table) return i + 1;
        continue;
      }
      if (key !== undefined && current === table) {
        const m = /^("?)([A-Za-z0-9_\-.]+)\1\s*=/.exec(line);
        if (m && m[2] === key) return i + 1;
      }
    }
    return undefined;
  }
}

/**
 * The line of `key` in table `table` of `file`, for an error found after the file was read (a
 * value checked against another file, or against the host); undefined when it cannot be told.
 */
export function lineInFile(file: string, table: string, key: string): number | undefined {
  try {
    return new SourceMap(readFileSync(file, "utf8")).lineOf(table, key);
  } catch {
    return undefined;
  }
}

export interface LoadedToml {
  file: string;
  values: Parsed;
  warnings: string[];
}

/** Reads and parses a TOML file, mapping read and syntax errors to ConfigError. */
export function readToml(file: string): { text: string; data: Parsed } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, undefined, undefined, `cannot read configuration: ${fileReadReason(err)}`);
  }
  try {
    return { text, data: parseToml(text) as Parsed };
  } catch (err) {
    const e = err as Error & { line?: number; col?: number };
    const reason = e.message.split("\n")[0].replace(/ at row \d+, col \d+, pos \d+:?$/, "");
    throw new ConfigError(file, undefined, (e.line ?? 0) + 1, `syntax error: ${reason}`, (e.col ?? 0) + 1);
  }
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (v instanceof Date) return "datetime";
  if (v === null) return "null";
  if (typeof v === "object") return "table";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "float";
  return typeof v;
}

function show(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : typeName(v) === "table" ? "a table" : String(v);
}

export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

/** ` — did you mean "x"?` for the known name closest to `name`, or "" when none is close. */
export function suggestion(name: string, known: string[]): string {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestDist) {
      best = k;
      bestDist = d;
    }
  }
  return best !== undefined && bestDist <= Math.max(2, Math.floor(name.length / 3)) ? ` — did you mean "${best}"?` : "";
}

/** The secret key that `name` gives from a file (`<key>_file`), if it is one. */
function secretFileKey(spec: SectionSpec, name: string): string | undefined {
  if (!name.endsWith("_file")) return undefined;
  const key = name.slice(0, -"_file".length);
  const keySpec = spec.keys[key];
  return keySpec?.kind === "string" && keySpec.secret ? key : undefined;
}

/** A secret's value from the file a `<key>_file` names (systemd credentials, container secrets): one trailing newline dropped. */
function readSecretFile(file: string, key: string, value: unknown, line: number | undefined): string {
  if (typeof value !== "string" || value === "") throw new ConfigError(file, key, line, `expected the path of a file holding the secret, got ${typeName(value)} ${show(value)}`);
  try {
    return readFileSync(value, "utf8").replace(/\r?\n$/, "");
  } catch (err) {
    throw new ConfigError(file, key, line, `cannot read ${JSON.stringify(value)}: ${fileReadReason(err)}`);
  }
}

/** What checking one file carries along: its name, where each key is, and the warnings so far. */
interface SchemaWalk {
  file: string;
  map: SourceMap;
  warnings: string[];
}

/** Checks parsed TOML against a schema; returns the typed values (durations in ms) and the warnings. */
export function applySchema(file: string, text: string, data: Parsed, schema: SectionSpec): LoadedToml {
  const w: SchemaWalk = { file, map: new SourceMap(text), warnings: [] };
  return { file, values: walk(w, "", schema, data), warnings: w.warnings };
}

/** The typed values of `input`, the table named `table`, checked against `spec`. */
function walk(w: SchemaWalk, table: string, spec: SectionSpec, input: Parsed): Parsed {
  const { file, map, warnings } = w;
  const out: Parsed = {};
  const qualified = (k: string) => (table ? `${table}.${k}` : k);
  for (const [name, value] of Object.entries(input)) {
    const keySpec = spec.keys[name];
    const sub = spec.sections?.[name];
    const tables = spec.tables?.[name];
    const secretKey = secretFileKey(spec, name);
    if (keySpec?.kind === "ignored") {
      const line = map.lineOf(table, name) ?? map.lineOf(qualified(name));
      warnings.push(`${file}${line ? `:${line}` : ""}: ${typeName(value) === "array" && typeName((value as unknown[])[0]) === "table" ? `[[${qualified(name)}]]` : qualified(name)} is ignored: ${keySpec.why}`);
    } else if (secretKey) {
      const secretSpec = spec.keys[secretKey] as KeySpec;
      const line = map.lineOf(table, name);
      if (secretKey in input) throw new ConfigError(file, qualified(name), line, `${qualified(secretKey)} is set too: give the secret one way only`);
      const secret = readSecretFile(file, qualified(name), value, line);
      out[secretKey] = checkValue(file, qualified(name), secretSpec, secret, line);
    } else if (keySpec) {
      out[name] = checkValue(file, qualified(name), keySpec, value, map.lineOf(table, name));
    } else if (tables) {
      out[name] = walkTables(w, qualified(name), tables, value);
    } else if (sub) {
      if (typeName(value) !== "table") {
        throw new ConfigError(file, qualified(name), map.lineOf(table, name), `expected a table [${qualified(name)}], got ${typeName(value)}`);
      }
      out[name] = walk(w, qualified(name), sub, value as Parsed);
    } else if (typeName(value) === "table") {
      // A misspelt section would drop every key in it: the daemon would miss a section it needs, or a driver.
      throw new ConfigError(file, undefined, map.lineOf(qualified(name)) ?? map.lineOf(table, name), `unknown section [${qualified(name)}]${unknownHint(table, spec, name)}`);
    } else {
      const line = map.lineOf(table, name);
      warnings.push(`${file}${line ? `:${line}` : ""}: unknown key "${qualified(name)}"${unknownHint(table, spec, name)}`);
    }
  }
  fillDefaults(w, table, spec, out);
  return out;
}

/** An array of tables (`[[name]]`): each checked against `spec`, named `name[i]` in errors. */
function walkTables(w: SchemaWalk, name: string, spec: SectionSpec, value: unknown): Parsed[] {
  const items = Array.isArray(value) ? value : [value];
  return items.map((item, i) => {
    if (typeName(item) !== "table") throw new ConfigError(w.file, name, w.map.lineOf("", name), `expected tables [[${name}]], got ${typeName(value)}`);
    return walk(w, `${name}[${i}]`, spec, item as Parsed);
  });
}

/** ` — did you mean "table.x"?` for `name`, a key or section `spec` does not know, or "" when no known name is close. */
function unknownHint(table: string, spec: SectionSpec, name: string): string {
  const known = [...Object.keys(spec.keys), ...Object.keys(spec.sections ?? {}), ...Object.keys(spec.tables ?? {})];
  const hint = suggestion(name, known);
  return hint ? hint.replace(/"([^"]+)"\?$/, `"${table ? table + "." : ""}$1"?`) : "";
}

/** Refuses a required key `out` lacks; gives the others their defaults. */
function fillDefaults(w: SchemaWalk, table: string, spec: SectionSpec, out: Parsed): void {
  for (const [name, keySpec] of Object.entries(spec.keys)) {
    if (name in out) continue;
    if ("required" in keySpec && keySpec.required) {
      const key = table ? `${table}.${name}` : name;
      throw new ConfigError(w.file, key, table ? w.map.lineOf(table) : undefined, table ? `required in [${table}] but missing` : "required but missing");
    }
    if ("default" in keySpec && keySpec.default !== undefined) {
      out[name] = keySpec.kind === "duration" ? parseDuration(keySpec.default) : keySpec.default;
    }
  }
}

/** `value` of `key` as `spec` wants it, or a ConfigError naming file, key and line. */
function checkValue(file: string, key: string, spec: KeySpec, value: unknown, line: number | undefined): unknown {
  const fail = (reason: string): never => {
    throw new ConfigError(file, key, line, reason);
  };
  const got = typeName(value);
  switch (spec.kind) {
    case "string": {
      // A secret's value is never repeated, even a mistyped one: the line goes to terminals and logs.
      if (typeof value !== "string") fail(`expected a string, got ${got}${spec.secret ? "" : ` ${show(value)}`}`);
      const s = spec.caseInsensitive ? (value as string).toLowerCase() : (value as string);
      if (spec.oneOf && !spec.oneOf.includes(s)) fail(`must be one of ${spec.oneOf.map((o) => `"${o}"`).join(", ")}, got ${JSON.stringify(s)}`);
      const problem = spec.check?.(s);
      if (problem) fail(problem);
      return s;
    }
    case "integer": {
      if (got !== "integer") fail(`expected an integer, got ${got} ${show(value)}`);
      const n = value as number;
      if (spec.min !== undefined && n < spec.min) fail(`must be ${spec.min} or more, got ${n}`);
      if (spec.max !== undefined && n > spec.max) fail(`must be ${spec.max} or less, got ${n}`);
      return n;
    }
    case "number": {
      if (typeof value !== "number") fail(`expected a number, got ${got} ${show(value)}`);
      const n = value as number;
      if (spec.min !== undefined && n < spec.min) fail(`must be ${spec.min} or more, got ${n}`);
      const problem = spec.check?.(n);
      if (problem) fail(problem);
      return n;
    }
    case "ignored":
      return undefined;
    case "boolean":
      if (typeof value !== "boolean") fail(`expected true or false, got ${got} ${show(value)}`);
      return value;
    case "duration":
      return checkDuration(spec, value, fail);
  }
}

function checkDuration(spec: Extract<KeySpec, { kind: "duration" }>, value: unknown, fail: (reason: string) => never): number {
  const got = typeName(value);
  let ms = 0;
  if (spec.integerSeconds && got === "integer") {
    ms = (value as number) * 1000;
  } else {
    if (typeof value !== "string") fail(`expected a duration string such as "30m"${spec.integerSeconds ? " or a whole number of seconds" : ""}, got ${got} ${show(value)}`);
    try {
      ms = parseDuration(value as string);
    } catch (err) {
      fail((err as Error).message);
    }
  }
  // Every duration of the files ends in a timer: one it cannot hold would fire at once.
  const problem = timerDurationProblem(ms, spec.min ?? 0, show(value));
  if (problem) fail(problem);
  return ms;
}
