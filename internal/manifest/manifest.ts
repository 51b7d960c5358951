// The YAML build manifest, in Djinn's format, turned into a typed build plan.
import path from "node:path";
import { LineCounter, parseDocument, isMap, isSeq, isScalar, isPair, type Node, type YAMLMap } from "yaml";
import { declaration, DRIVER_TYPES } from "../driver/catalogue.js";
import { InputError } from "../errors/errors.js";
import { isShellName } from "../shell/quote.js";
import { cacheStageName, manifestTooLarge, setupStageName } from "./names.js";

export { cacheStageName, manifestTooLarge, setupStageName };

export class ManifestError extends InputError {
  constructor(readonly field: string, readonly reason: string, readonly line?: number) {
    super(`${line ? `line ${line}: ` : ""}${field ? `${field}: ` : ""}${reason}`);
    this.name = "ManifestError";
  }
}


export interface Passthrough {
  /** Where it comes from: an object name, or a path in the build environment for artifacts. */
  source: string;
  /** Where it goes: a path in the build environment for objects, an artifact name for artifacts. */
  dest: string;
}

export interface Source {
  url: string;
  ref?: string;
  dir: string;
}

export interface ManifestJob {
  stage: string;
  name: string;
  commands: string[];
  artifacts: Passthrough[];
}

/** `cache:` policy: restore and save, only restore, or only save (a rebuild). */
export const CACHE_POLICIES = ["pull-push", "pull", "push"] as const;
export type CachePolicy = (typeof CACHE_POLICIES)[number];

/** The manifest's `cache:` (docs/cache.md): what is kept between builds of a namespace. */
export interface ManifestCache {
  /** Written with ${VAR} references, expanded when the build runs; absent: one cache per namespace and driver image. */
  key?: string;
  /** Relative to the workspace, or `~/...` under the job user's home. */
  paths: string[];
  policy: CachePolicy;
}

export interface Manifest {
  namespace?: string;
  cache?: ManifestCache;
  driver: Record<string, string> & { type: string };
  env: [string, string][];
  objects: Passthrough[];
  sources: Source[];
  stages: string[];
  allowFailures: string[];
  jobs: ManifestJob[];
}

export interface ParsedManifest {
  manifest: Manifest;
  warnings: string[];
}

/** `a => b` or `a` (b defaulting to a's base name), as Djinn writes objects and artifacts. */
export function parsePassthrough(text: string): Passthrough {
  const i = text.indexOf("=>");
  if (i < 0) {
    const source = text.trim();
    return { source, dest: path.posix.basename(source) };
  }
  return { source: text.slice(0, i).trim(), dest: text.slice(i + 2).trim() };
}

/** `url [ref] [=> dir]`; dir defaults to the URL's base name without .git. */
export function parseSource(text: string): Source {
  let rest = text.trim();
  let dir: string | undefined;
  const arrow = rest.indexOf("=>");
  if (arrow >= 0) {
    dir = rest.slice(arrow + 2).trim();
    rest = rest.slice(0, arrow).trim();
  }
  const [url, ref, ...extra] = rest.split(/\s+/);
  if (extra.length) throw new Error(`expected "url [ref] [=> dir]", got ${JSON.stringify(text)}`);
  const base = url.replace(/\/+$/, "").split("/").pop() ?? url;
  return { url, ref: ref || undefined, dir: dir || base.replace(/\.git$/, "") };
}

/** Deepest nesting of maps and lists a manifest may have (Djinn's own forms need 4). */
export const MAX_DEPTH = 32;

/** The top-level field whose block holds line `line` (1-based), for errors found below the YAML level. */
function fieldAtLine(text: string, line: number): string {
  const lines = text.split("\n").slice(0, line).reverse();
  for (const l of lines) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*:/.exec(l);
    if (m) return m[1];
  }
  return "";
}

/** The line and column (1-based) of string offset `at`. */
function position(text: string, at: number): { line: number; col: number } {
  const before = text.slice(0, at);
  return { line: before.split("\n").length, col: at - before.lastIndexOf("\n") };
}

/** A manifest file's bytes as text: invalid UTF-8 is refused with where it is, never replaced silently. */
export function decodeManifest(bytes: Buffer): string {
  const text = bytes.toString("utf8");
  const again = Buffer.from(text, "utf8");
  if (again.equals(bytes)) return text;
  let at = 0;
  while (at < bytes.length && bytes[at] === again[at]) at++;
  // The valid prefix decodes to the same text: count lines and characters in it.
  const prefix = bytes.subarray(0, at).toString("utf8");
  const { line, col } = position(prefix + "\0", prefix.length);
  throw new ManifestError(fieldAtLine(prefix + "\n", line), `not valid UTF-8: byte 0x${bytes[at].toString(16).padStart(2, "0")} at column ${col} (save the manifest as UTF-8)`, line);
}

/** Refuses a NUL byte anywhere in the text (PostgreSQL cannot store it, a shell cannot run it). */
function refuseNul(text: string): void {
  const at = text.indexOf("\0");
  if (at < 0) return;
  const { line, col } = position(text, at);
  throw new ManifestError(fieldAtLine(text, line), `contains a NUL byte (column ${col})`, line);
}

/** The field path of the first map or list nested deeper than MAX_DEPTH, if any: walked without recursion. */
function tooDeep(root: Node): Node | undefined {
  const stack: [Node, number][] = [[root, 1]];
  while (stack.length) {
    const [node, depth] = stack.pop()!;
    if (!isMap(node) && !isSeq(node)) continue;
    if (depth > MAX_DEPTH) return node;
    for (const item of node.items as unknown[]) {
      const child = isPair(item) ? (item.value as Node) : (item as Node);
      if (child) stack.push([child, depth + 1]);
    }
  }
  return undefined;
}

/** The error for nesting too deep for the YAML library to parse, at the first line that looks that deep. */
function tooDeepInText(text: string): ManifestError {
  const lines = text.split("\n");
  const i = lines.findIndex((l) => l.search(/\S/) > 2 * MAX_DEPTH || (l.match(/[[{]/g)?.length ?? 0) > MAX_DEPTH);
  return new ManifestError(i < 0 ? "" : fieldAtLine(text, i + 1), `nested more than ${MAX_DEPTH} levels deep`, i < 0 ? undefined : i + 1);
}

/** The manifest's YAML parsed and vetted (no NUL byte, valid YAML, a mapping, not nested too deep). */
function parseYaml(text: string): { root: YAMLMap; lines: LineCounter } {
  refuseNul(text);
  const lines = new LineCounter();
  let doc: ReturnType<typeof parseDocument>;
  try {
    doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: true });
  } catch (err) {
    // The YAML library recurses per level of nesting: very deep nesting overflows the stack.
    if (err instanceof RangeError) throw tooDeepInText(text);
    throw err;
  }
  if (doc.errors.length) {
    const e = doc.errors[0];
    const pos = e.linePos?.[0];
    if (/Maximum call stack size exceeded/.test(e.message)) throw tooDeepInText(text);
    throw new ManifestError("", `not valid YAML: ${e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")}${pos ? ` (column ${pos.col})` : ""}`, pos?.line);
  }
  const root = doc.contents;
  const lineOf = (node: Node | null | undefined) => nodeLine(lines, node);
  if (!isMap(root)) throw new ManifestError("", "a manifest must be a YAML mapping with driver, stages and jobs", lineOf(root));
  const deep = tooDeep(root);
  if (deep) {
    const line = lineOf(deep);
    throw new ManifestError(line ? fieldAtLine(text, line) : "", `nested more than ${MAX_DEPTH} levels deep`, line);
  }
  return { root: root as YAMLMap, lines };
}

/** The line a node starts on, when it has a place in the text. */
function nodeLine(lines: LineCounter, node: Node | null | undefined): number | undefined {
  return node?.range ? lines.linePos(node.range[0]).line : undefined;
}

/** Reads typed values out of the parsed document: every problem names its field and line. */
class Fields {
  readonly warnings: string[] = [];
  constructor(private readonly lines: LineCounter) {}

  lineOf(node: Node | null | undefined): number | undefined {
    return nodeLine(this.lines, node);
  }

  get(map: Node | undefined, key: string): Node | undefined {
    return isMap(map) ? (map.get(key, true) as Node | undefined) : undefined;
  }

  fail(field: string, reason: string, node?: Node | null): never {
    throw new ManifestError(field, reason, this.lineOf(node));
  }

  warn(node: Node | null | undefined, text: string): void {
    this.warnings.push(`line ${this.lineOf(node) ?? "?"}: ${text}`);
  }

  /** Warns about each key of `map` not in `known`, prefixed with `where`. */
  unknownKeys(map: YAMLMap, known: readonly string[], where = ""): void {
    for (const pair of map.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      if (!known.includes(key)) this.warn(pair.key as Node, `${where}unknown field "${key}" ignored`);
    }
  }

  // Every name, path and command is a string read here: a NUL written as an escape ("\0") stops here.
  string(field: string, node: Node | undefined): string {
    if (isMap(node)) this.fail(field, `expected a string, got a map${quotingHint(node)}`, node);
    if (!isScalar(node) || node.value === null || typeof node.value === "object") this.fail(field, "expected a string", node);
    const value = String((node as { value: unknown }).value);
    if (value.includes("\0")) this.fail(field, "contains a NUL byte", node);
    return value;
  }

  stringList(field: string, node: Node | undefined): string[] {
    if (node === undefined || (isScalar(node) && node.value === null)) return [];
    if (!isSeq(node)) return this.fail(field, "expected a list of strings", node);
    return node.items.map((item, i) => this.string(`${field}[${i}]`, item as Node));
  }
}

/**
 * For a line such as `- echo key: value`, which YAML reads as a map: the line quoted, as it was
 * most likely meant. Nothing for a map that was written as one.
 */
function quotingHint(node: YAMLMap): string {
  const [pair] = node.items;
  if (node.items.length !== 1 || !isScalar(pair.key) || !isScalar(pair.value)) return "";
  const line = `${String(pair.key.value)}: ${String(pair.value.value ?? "")}`;
  return ` (YAML reads "key: value" as a map: quote the whole line, '${line.replace(/'/g, "''")}')`;
}

function readDriver(f: Fields, root: YAMLMap): Manifest["driver"] {
  const node = f.get(root, "driver");
  if (node === undefined) f.fail("driver", `required: a map with at least \`type\` (${DRIVER_TYPES.slice(0, -1).join(", ")} or ${DRIVER_TYPES.at(-1)})`, root);
  if (!isMap(node)) return f.fail("driver", "expected a map such as {type: docker, image: debian}", node);
  const driver: Record<string, string> = {};
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    if (key.includes("\0")) f.fail("driver", "a key contains a NUL byte", pair.key as Node);
    driver[key] = f.string(`driver.${key}`, pair.value as Node);
  }
  if (!driver.type) f.fail("driver.type", `required: one of ${DRIVER_TYPES.join(", ")}`, node);
  if (!DRIVER_TYPES.includes(driver.type)) f.fail("driver.type", `unknown driver ${JSON.stringify(driver.type)}: must be one of ${DRIVER_TYPES.join(", ")}`, f.get(node, "type"));
  const declared = declaration(driver.type);
  const need = declared?.manifestRequires;
  if (need && !driver[need]) f.fail(`driver.${need}`, `required by the ${driver.type} driver`, node);
  const wrong = declared?.manifestProblem?.(driver);
  if (wrong) f.fail(`driver.${wrong.key}`, wrong.problem, f.get(node, wrong.key));
  return driver as Manifest["driver"];
}

function readEnv(f: Fields, root: YAMLMap): [string, string][] {
  return f.stringList("env", f.get(root, "env")).map((entry, i) => {
    const eq = entry.indexOf("=");
    const key = eq < 0 ? entry : entry.slice(0, eq);
    if (eq < 0 || !isShellName(key)) f.fail(`env[${i}]`, `expected KEY=value with KEY a shell variable name, got ${JSON.stringify(entry)}`, f.get(root, "env"));
    return [key, entry.slice(eq + 1)];
  });
}

/** `field`'s list of passthroughs (objects, a job's artifacts); `form` shows the expected shape. */
function readPassthroughs(f: Fields, field: string, node: Node | undefined, form: string): Passthrough[] {
  return f.stringList(field, node).map((entry, i) => {
    const p = parsePassthrough(entry);
    if (!p.source || !p.dest) f.fail(`${field}[${i}]`, `expected ${form}, got ${JSON.stringify(entry)}`, node);
    return p;
  });
}

/** Why a cache path is refused: it must stay under the workspace (relative) or the home (`~/...`). */
export function cachePathProblem(p: string): string | undefined {
  const rel = p === "~" ? "" : p.startsWith("~/") ? p.slice(2) : p;
  if (/[\n\r]/.test(p)) return "holds a line break";
  if (p.startsWith("/")) return "is absolute: a cache path is relative to the workspace, or ~/... under the home";
  if (rel.replace(/\/+$/, "") === "" || rel.replace(/\/+$/, "") === ".") return "names the whole workspace or home: name the directories to keep";
  if (rel.split("/").includes("..")) return "reaches outside the workspace or home (..)";
  return undefined;
}

function readCache(f: Fields, root: YAMLMap): ManifestCache | undefined {
  const node = f.get(root, "cache");
  if (node === undefined || (isScalar(node) && node.value === null)) return undefined;
  if (!isMap(node)) return f.fail("cache", "expected a map with paths, and optionally key and policy", node);
  f.unknownKeys(node, ["key", "paths", "policy"], "cache: ");
  const keyNode = f.get(node, "key");
  const key = keyNode === undefined ? undefined : f.string("cache.key", keyNode);
  if (key !== undefined && key.trim() === "") f.fail("cache.key", "must not be empty (leave it out for the default key)", keyNode);
  const pathsNode = f.get(node, "paths");
  const paths = f.stringList("cache.paths", pathsNode);
  if (paths.length === 0) f.fail("cache.paths", "required: a list of directories or files to keep between builds", pathsNode ?? node);
  paths.forEach((p, i) => {
    const problem = cachePathProblem(p);
    if (problem) f.fail(`cache.paths[${i}]`, `${JSON.stringify(p)} ${problem}`, pathsNode);
  });
  const policyNode = f.get(node, "policy");
  const policy = policyNode === undefined ? "pull-push" : f.string("cache.policy", policyNode);
  if (!(CACHE_POLICIES as readonly string[]).includes(policy)) f.fail("cache.policy", `must be one of ${CACHE_POLICIES.join(", ")}, got ${JSON.stringify(policy)}`, policyNode);
  return { ...(key === undefined ? {} : { key }), paths, policy: policy as CachePolicy };
}

function readSources(f: Fields, root: YAMLMap): Source[] {
  return f.stringList("sources", f.get(root, "sources")).map((entry, i) => {
    try {
      return parseSource(entry);
    } catch (err) {
      return f.fail(`sources[${i}]`, (err as Error).message, f.get(root, "sources"));
    }
  });
}

function readStages(f: Fields, root: YAMLMap): string[] {
  const node = f.get(root, "stages");
  const stages = f.stringList("stages", node);
  if (stages.length === 0) f.fail("stages", "required: a list of stage names, run in order", node ?? root);
  const seen = new Set<string>();
  const reserved = [setupStageName(""), cacheStageName("")];
  for (const [i, s] of stages.entries()) {
    const taken = reserved.find((r) => s.startsWith(r));
    if (taken) f.fail(`stages[${i}]`, `stage names starting "${taken}" are reserved for the ${taken === reserved[0] ? "setup" : "cache"} stage the worker adds`, node);
    if (seen.has(s)) f.fail(`stages[${i}]`, `stage ${JSON.stringify(s)} is listed twice`, node);
    seen.add(s);
  }
  return stages;
}

function readAllowFailures(f: Fields, root: YAMLMap, stages: string[]): string[] {
  const node = f.get(root, "allow_failures");
  const allowFailures = f.stringList("allow_failures", node);
  for (const s of allowFailures) {
    if (!stages.includes(s)) f.warn(node, `allow_failures names stage "${s}", which is not in stages`);
  }
  return allowFailures;
}

/** One job's stage, commands and artifacts (its name is given once its place in the stage is known). */
function readJob(f: Fields, node: Node, field: string): Omit<ManifestJob, "name"> {
  if (!isMap(node)) return f.fail(field, "expected a map with stage, commands and/or artifacts, and optionally name", node);
  f.unknownKeys(node, ["stage", "name", "commands", "artifacts"], `${field}: `);
  const stageNode = f.get(node, "stage");
  if (stageNode === undefined) f.fail(`${field}.stage`, "required", node);
  const stage = f.string(`${field}.stage`, stageNode);
  const commands = f.stringList(`${field}.commands`, f.get(node, "commands"));
  const artifacts = readPassthroughs(f, `${field}.artifacts`, f.get(node, "artifacts"), `"path => name" or "path"`);
  // A job may only run commands, or only collect what earlier jobs left (as in Djinn); not neither.
  if (commands.length === 0 && artifacts.length === 0) {
    const named = f.get(node, "name");
    const who = isScalar(named) && named.value !== null ? `job ${JSON.stringify(String(named.value))}` : `the job in stage ${JSON.stringify(stage)}`;
    f.fail(field, `${who} has neither commands nor artifacts: give it a list of commands, of artifacts, or both`, node);
  }
  return { stage, commands, artifacts };
}

function readJobs(f: Fields, root: YAMLMap, stages: string[]): ManifestJob[] {
  const jobsNode = f.get(root, "jobs");
  if (jobsNode === undefined || (isScalar(jobsNode) && jobsNode.value === null)) f.fail("jobs", "required: a list of jobs, each with a stage and commands and/or artifacts", root);
  if (!isSeq(jobsNode)) return f.fail("jobs", "expected a list of jobs", jobsNode);
  const jobs: ManifestJob[] = [];
  const perStage = new Map<string, number>();
  const names = new Set<string>();
  jobsNode.items.forEach((item, i) => {
    const node = item as Node;
    const field = `jobs[${i}]`;
    const job = readJob(f, node, field);
    if (!stages.includes(job.stage)) {
      f.warn(node, `${field} is in stage "${job.stage}", which is not in stages: ignored`);
      return;
    }
    const n = (perStage.get(job.stage) ?? 0) + 1;
    perStage.set(job.stage, n);
    const nameNode = f.get(node, "name");
    const name = nameNode === undefined ? `${job.stage}.${n}` : f.string(`${field}.name`, nameNode);
    if (names.has(`${job.stage}/${name}`)) f.fail(`${field}.name`, `stage "${job.stage}" already has a job named "${name}"`, nameNode ?? node);
    names.add(`${job.stage}/${name}`);
    jobs.push({ stage: job.stage, name, commands: job.commands, artifacts: job.artifacts });
  });
  if (jobs.length === 0) f.fail("jobs", "no job belongs to a listed stage: nothing to run", jobsNode);
  return jobs;
}

export function parseManifest(text: string): ParsedManifest {
  const { root, lines } = parseYaml(text);
  const f = new Fields(lines);
  f.unknownKeys(root, ["namespace", "driver", "env", "objects", "sources", "stages", "allow_failures", "jobs", "cache"]);
  const namespaceNode = f.get(root, "namespace");
  const namespace = namespaceNode === undefined ? undefined : f.string("namespace", namespaceNode);
  const driver = readDriver(f, root);
  const env = readEnv(f, root);
  const objects = readPassthroughs(f, "objects", f.get(root, "objects"), `"name => /destination" or "name"`);
  const sources = readSources(f, root);
  const stages = readStages(f, root);
  const allowFailures = readAllowFailures(f, root, stages);
  const jobs = readJobs(f, root, stages);
  const cache = readCache(f, root);
  return { manifest: { namespace, driver, env, objects, sources, stages, allowFailures, jobs, ...(cache ? { cache } : {}) }, warnings: f.warnings };
}
