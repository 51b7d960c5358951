// The YAML build manifest, in Djinn's format, turned into a typed build plan.
import path from "node:path";
import { LineCounter, parseDocument, isMap, isSeq, isScalar, type Node } from "yaml";

export class ManifestError extends Error {
  constructor(readonly field: string, readonly reason: string, readonly line?: number) {
    super(`${line ? `line ${line}: ` : ""}${field ? `${field}: ` : ""}${reason}`);
    this.name = "ManifestError";
  }
}

export const DRIVER_TYPES = ["docker", "qemu", "ssh", "os"] as const;

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

export interface Manifest {
  namespace?: string;
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

export function parseManifest(text: string): ParsedManifest {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const pos = e.linePos?.[0];
    throw new ManifestError("", `not valid YAML: ${e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")}${pos ? ` (column ${pos.col})` : ""}`, pos?.line);
  }
  const lineOf = (node: Node | null | undefined): number | undefined => (node?.range ? lines.linePos(node.range[0]).line : undefined);
  const warnings: string[] = [];
  const root = doc.contents;
  if (!isMap(root)) throw new ManifestError("", "a manifest must be a YAML mapping with driver, stages and jobs", lineOf(root));

  const get = (map: Node, key: string): Node | undefined => (isMap(map) ? (map.get(key, true) as Node | undefined) : undefined);
  const fail = (field: string, reason: string, node?: Node | null): never => {
    throw new ManifestError(field, reason, lineOf(node));
  };
  const scalarString = (field: string, node: Node | undefined): string => {
    if (!isScalar(node) || node.value === null || typeof node.value === "object") fail(field, "expected a string", node);
    return String((node as { value: unknown }).value);
  };
  const stringList = (field: string, node: Node | undefined): string[] => {
    if (node === undefined || (isScalar(node) && node.value === null)) return [];
    if (!isSeq(node)) return fail(field, "expected a list of strings", node);
    return node.items.map((item, i) => {
      if (!isScalar(item) || item.value === null || typeof item.value === "object") fail(`${field}[${i}]`, "expected a string", item as Node);
      return String((item as { value: unknown }).value);
    });
  };

  const known = new Set(["namespace", "driver", "env", "objects", "sources", "stages", "allow_failures", "jobs"]);
  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    if (!known.has(key)) warnings.push(`line ${lineOf(pair.key as Node) ?? "?"}: unknown field "${key}" ignored`);
  }

  const namespaceNode = get(root, "namespace");
  const namespace = namespaceNode === undefined ? undefined : scalarString("namespace", namespaceNode);

  const driverNode = get(root, "driver");
  if (driverNode === undefined) fail("driver", "required: a map with at least `type` (docker, qemu, ssh or os)", root);
  if (!isMap(driverNode)) fail("driver", "expected a map such as {type: docker, image: debian}", driverNode);
  const driver: Record<string, string> = {};
  for (const pair of (driverNode as { items: { key: unknown; value: unknown }[] }).items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    driver[key] = scalarString(`driver.${key}`, pair.value as Node);
  }
  if (!driver.type) fail("driver.type", "required: one of docker, qemu, ssh, os", driverNode);
  if (!(DRIVER_TYPES as readonly string[]).includes(driver.type)) fail("driver.type", `unknown driver ${JSON.stringify(driver.type)}: must be one of ${DRIVER_TYPES.join(", ")}`, get(driverNode!, "type"));
  const needs: Record<string, string> = { docker: "image", qemu: "image", ssh: "address" };
  const need = needs[driver.type];
  if (need && !driver[need]) fail(`driver.${need}`, `required by the ${driver.type} driver`, driverNode);

  const env: [string, string][] = stringList("env", get(root, "env")).map((entry, i) => {
    const eq = entry.indexOf("=");
    const key = eq < 0 ? entry : entry.slice(0, eq);
    if (eq < 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) fail(`env[${i}]`, `expected KEY=value with KEY a shell variable name, got ${JSON.stringify(entry)}`, get(root, "env"));
    return [key, entry.slice(eq + 1)];
  });

  const objects = stringList("objects", get(root, "objects")).map((entry, i) => {
    const p = parsePassthrough(entry);
    if (!p.source || !p.dest) fail(`objects[${i}]`, `expected "name => /destination" or "name", got ${JSON.stringify(entry)}`, get(root, "objects"));
    return p;
  });

  const sources = stringList("sources", get(root, "sources")).map((entry, i) => {
    try {
      return parseSource(entry);
    } catch (err) {
      return fail(`sources[${i}]`, (err as Error).message, get(root, "sources"));
    }
  });

  const stagesNode = get(root, "stages");
  const stages = stringList("stages", stagesNode);
  if (stages.length === 0) fail("stages", "required: a list of stage names, run in order", stagesNode ?? root);
  const seen = new Set<string>();
  for (const [i, s] of stages.entries()) {
    if (seen.has(s)) fail(`stages[${i}]`, `stage ${JSON.stringify(s)} is listed twice`, stagesNode);
    seen.add(s);
  }

  const allowNode = get(root, "allow_failures");
  const allowFailures = stringList("allow_failures", allowNode);
  for (const s of allowFailures) {
    if (!seen.has(s)) warnings.push(`line ${lineOf(allowNode) ?? "?"}: allow_failures names stage "${s}", which is not in stages`);
  }

  const jobsNode = get(root, "jobs");
  if (jobsNode === undefined || (isScalar(jobsNode) && jobsNode.value === null)) fail("jobs", "required: a list of jobs, each with a stage and commands", root);
  if (!isSeq(jobsNode)) fail("jobs", "expected a list of jobs", jobsNode);
  const jobs: ManifestJob[] = [];
  const perStage = new Map<string, number>();
  const names = new Set<string>();
  (jobsNode as { items: unknown[] }).items.forEach((item, i) => {
    const node = item as Node;
    const field = `jobs[${i}]`;
    if (!isMap(node)) fail(field, "expected a map with stage, commands and optionally name and artifacts", node);
    for (const pair of (node as { items: { key: unknown }[] }).items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      if (!["stage", "name", "commands", "artifacts"].includes(key)) warnings.push(`line ${lineOf(pair.key as Node) ?? "?"}: ${field}: unknown field "${key}" ignored`);
    }
    const stageNode = get(node, "stage");
    if (stageNode === undefined) fail(`${field}.stage`, "required", node);
    const stage = scalarString(`${field}.stage`, stageNode);
    const commands = stringList(`${field}.commands`, get(node, "commands"));
    if (commands.length === 0) fail(`${field}.commands`, "required: a list of shell commands", get(node, "commands") ?? node);
    const artifacts = stringList(`${field}.artifacts`, get(node, "artifacts")).map((entry) => parsePassthrough(entry));
    if (!seen.has(stage)) {
      warnings.push(`line ${lineOf(node) ?? "?"}: ${field} is in stage "${stage}", which is not in stages: ignored`);
      return;
    }
    const n = (perStage.get(stage) ?? 0) + 1;
    perStage.set(stage, n);
    const nameNode = get(node, "name");
    const name = nameNode === undefined ? `${stage}.${n}` : scalarString(`${field}.name`, nameNode);
    if (names.has(`${stage}/${name}`)) fail(`${field}.name`, `stage "${stage}" already has a job named "${name}"`, nameNode ?? node);
    names.add(`${stage}/${name}`);
    jobs.push({ stage, name, commands, artifacts });
  });
  if (jobs.length === 0) fail("jobs", "no job belongs to a listed stage: nothing to run", jobsNode);

  return {
    manifest: { namespace, driver: driver as Manifest["driver"], env, objects, sources, stages, allowFailures, jobs },
    warnings,
  };
}
