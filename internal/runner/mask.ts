// Replaces every masked value in a byte stream, even one split across chunks, holding back
// at most (longest value - 1) bytes, so memory stays flat whatever a job prints.
import { Transform, type TransformCallback } from "node:stream";
import type { BuildPlan } from "./plan.js";

export const MASK = Buffer.from("xxxxxx");

/**
 * The fewest characters a masked value may have. Masking a shorter one hides little (a 1-character
 * value is guessed at once) and turns every occurrence of those characters in the output into
 * xxxxxx, making the log unreadable: such a value is refused.
 */
export const MIN_MASKED_LENGTH = 6;

/** Why a masked value cannot be used, or undefined when it can. `name` is the variable, never the value. */
export function maskedValueProblem(name: string, value: string): string | undefined {
  if (value.length >= MIN_MASKED_LENGTH) return undefined;
  return `masked variable ${name} is ${value.length} character${value.length === 1 ? "" : "s"} long: a masked value needs at least ${MIN_MASKED_LENGTH} (a shorter one cannot be masked usefully)`;
}

/**
 * What is masked for one value: the whole of it, each of its lines on its own (trimmed), so a
 * job that prints one line of a multi-line value shows none of it, and the forms in which shells
 * quote it (shellQuotedForms). Lines shorter than MIN_MASKED_LENGTH are masked only as part of the whole.
 */
export function maskPatterns(value: string): string[] {
  const forms = [value, ...shellQuotedForms(value)];
  if (!/[\r\n]/.test(value)) return forms;
  const lines = value.split(/\r?\n|\r/).map((l) => l.trim()).filter((l) => l.length >= MIN_MASKED_LENGTH);
  return [...forms, ...lines.flatMap((l) => [l, ...shellQuotedForms(l)])];
}

/**
 * The forms in which shells show a value inside a quoted word, for a job that turns on the
 * shell's trace (`set -x`) itself (job scripts do not: ./plan.ts jobScript):
 * - `'` closed, escaped and reopened: `'\''` (bash) or `'"'"'` (busybox ash); dash prints words unquoted;
 * - bash's ANSI-C form `$'...'` (as `printf %q` writes a value with newlines or control
 *   characters): `\n`, `\t`, `\E`, `\ooo`, with `'` and `\` escaped; only what lies between
 *   `$'` and `'`, so it matches inside a longer word.
 * Otherwise these shells show the value as it is, which the value itself masks.
 */
export function shellQuotedForms(value: string): string[] {
  const forms: string[] = [];
  if (value.includes("'")) forms.push(value.replaceAll("'", `'\\''`), value.replaceAll("'", `'"'"'`));
  if (/[\x00-\x1f\x7f]/.test(value)) forms.push(ansiCQuoted(value));
  return forms;
}

const ANSI_C_ESCAPES: Record<string, string> = { "\x07": "\\a", "\b": "\\b", "\x1b": "\\E", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", "'": "\\'", "\\": "\\\\" };

/** The inside of bash's `$'...'` for `value` (lib/sh/strtrans.c ansic_quote). */
function ansiCQuoted(value: string): string {
  let out = "";
  for (const c of value) {
    const code = c.codePointAt(0)!;
    out += ANSI_C_ESCAPES[c] ?? (code < 0x20 || code === 0x7f ? `\\${code.toString(8).padStart(3, "0")}` : c);
  }
  return out;
}

/** Whether `text` holds a masked value (any of maskPatterns of `values`). */
export function holdsMasked(text: string, values: Iterable<string>): boolean {
  return maskText(text, values) !== text;
}

/**
 * Why a plan cannot run because a name in it holds a masked value, or undefined. A stage, job or
 * artifact name (and an artifact's source) is stored in rows, shown by `status`, `logs` and `run`
 * and used for files as it is, never masked: a build that puts a masked value there is refused.
 * The line shows the name masked.
 */
export function secretInNames(plan: BuildPlan, masks: string[]): string | undefined {
  const refuse = (what: string, name: string) => `${what} ${JSON.stringify(maskText(name, masks))} holds a masked value: names are stored and shown as they are, so none may hold one`;
  for (const stage of plan.stages) {
    if (holdsMasked(stage.name, masks)) return refuse("stage", stage.name);
    for (const job of stage.jobs) {
      if (holdsMasked(job.name, masks)) return refuse("job", job.name);
      for (const a of job.artifacts) {
        if (holdsMasked(a.source, masks)) return refuse("artifact source", a.source);
        if (holdsMasked(a.dest, masks)) return refuse("artifact", a.dest);
      }
    }
  }
  return undefined;
}

/** `text` with every pattern of `values` (see maskPatterns) replaced by the mask: for text stored or shown outside a build's output. */
export function maskText(text: string, values: Iterable<string>): string {
  const patterns = [...new Set([...values].flatMap(maskPatterns).filter((p) => p.length > 0))].sort((a, b) => b.length - a.length);
  let out = text;
  for (const p of patterns) out = out.split(p).join(MASK.toString());
  return out;
}

export class MaskStream extends Transform {
  private readonly patterns: Buffer[];
  private readonly hold: number;
  private carry: Buffer = Buffer.alloc(0);

  constructor(values: Iterable<string>) {
    super();
    const unique = [...new Set([...values].filter((v) => v.length > 0))];
    // Longest first, so a value that contains another is masked whole.
    this.patterns = unique.map((v) => Buffer.from(v)).sort((a, b) => b.length - a.length);
    this.hold = this.patterns.length ? this.patterns[0].length - 1 : 0;
  }

  override _transform(chunk: Buffer | string, _enc: BufferEncoding, done: TransformCallback): void {
    const data = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    if (this.patterns.length === 0) return done(null, data);
    const buf = this.carry.length ? Buffer.concat([this.carry, data]) : data;
    this.carry = this.emit_(buf, buf.length - this.hold);
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.carry.length) this.emit_(this.carry, this.carry.length);
    this.carry = Buffer.alloc(0);
    done();
  }

  /** Masks matches that start before `limit`, pushes everything before max(limit, last match end), returns the rest. */
  private emit_(buf: Buffer, limit: number): Buffer {
    let pos = 0;
    const next = this.patterns.map((p) => buf.indexOf(p, 0));
    for (;;) {
      let start = -1;
      let len = 0;
      for (let i = 0; i < this.patterns.length; i++) {
        if (next[i] >= 0 && next[i] < pos) next[i] = buf.indexOf(this.patterns[i], pos);
        const at = next[i];
        if (at < 0) continue;
        if (start < 0 || at < start || (at === start && this.patterns[i].length > len)) {
          start = at;
          len = this.patterns[i].length;
        }
      }
      if (start < 0 || start >= limit) break;
      if (start > pos) this.push(buf.subarray(pos, start));
      this.push(MASK);
      pos = start + len;
    }
    const cut = Math.max(pos, limit);
    if (cut > pos) this.push(buf.subarray(pos, cut));
    return Buffer.from(buf.subarray(cut));
  }
}
