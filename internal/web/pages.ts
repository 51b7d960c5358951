// The server-rendered pages: usable without JavaScript; web.js adds the live parts to a build page.
import type pg from "pg";
import { MASK } from "../runner/mask.js";
import { BUILD_STATUSES, TERMINAL_STATUSES } from "../runner/status.js";
import { formatBytes, html, Html, page, postForm, runTime, statusLabel, timeTag, type PageViewer } from "./html.js";
import { ansiConverter } from "./output.js";
import { buildTrigger } from "../store/triggers.js";
import {
  buildArtifacts,
  buildObjects,
  buildStages,
  buildVariables,
  jobOutputRows,
  lastOutputId,
  OUTPUT_BATCH,
  tailOf,
  tailStart,
  type BuildDetail,
  type BuildRow,
  type ListFilter,
  type StageRow,
} from "./queries.js";

/** How much of a job's output a build page shows: its tail; the rest is in the raw log. */
export const TAIL_BYTES = 1024 * 1024;

/** What masked values are shown as: what runner/mask.ts writes in their place in output. */
const MASKED = MASK.toString();

/** The list's URL for `f` (keeping its filters), e.g. for the next page. */
export function listUrl(base: string, f: ListFilter): string {
  const q = new URLSearchParams();
  if (f.status) q.set("status", f.status);
  if (f.namespace !== undefined) q.set("namespace", f.namespace);
  if (f.before !== undefined) q.set("before", String(f.before));
  const s = q.toString();
  return s ? `${base}?${s}` : base;
}

export function listPage(builds: BuildRow[], f: ListFilter, next: number | undefined, viewer?: PageViewer): Html {
  const options = BUILD_STATUSES.map((s) => html`<option value="${s}"${f.status === s ? html` selected` : ""}>${s.replace(/_/g, " ")}</option>`);
  const rows = builds.map(
    (b) => html`<tr data-build="${b.id}"><td><a href="/builds/${b.id}">#${b.id}</a></td><td>${statusLabel(b.status)}</td>
<td>${b.namespace ?? ""}</td><td>${b.driver}</td><td>${timeTag(b.createdAt)}</td><td>${runTime(b.startedAt, b.finishedAt)}</td></tr>`,
  );
  const body = html`<main><h1>Builds</h1>
<form class="filter" method="get" action="/"><label>Status <select name="status"><option value="">any</option>${options}</select></label>
<label>Namespace <input name="namespace" value="${f.namespace ?? ""}"></label><button type="submit">Filter</button></form>
${builds.length === 0 ? html`<p class="empty">No builds.</p>` : html`<table class="builds"><thead><tr><th>Build</th><th>Status</th><th>Namespace</th><th>Driver</th><th>Submitted</th><th>Took</th></tr></thead><tbody>${rows}</tbody></table>`}
<nav class="pages">${f.before !== undefined ? html`<a href="${listUrl("/", { ...f, before: undefined })}">Newest</a>` : ""} ${next !== undefined ? html`<a rel="next" href="${listUrl("/", { ...f, before: next })}">Older</a>` : ""}</nav>
</main>`;
  return page("Builds", body, viewer);
}

/** The buttons of a signed-in user: kill while the build is not over, run again always. Plain forms: no script needed. */
function actions(b: BuildDetail, viewer: PageViewer, live: boolean): Html {
  return html`<div class="actions">${live ? postForm(`/builds/${b.id}/kill`, viewer, "Kill", "kill") : ""} ${postForm(`/builds/${b.id}/rerun`, viewer, "Run again", "rerun")}</div>`;
}

function jobsTable(stages: StageRow[]): Html {
  const rows = stages.flatMap((s) =>
    s.jobs.map(
      (j) => html`<tr><td>${s.name} ${statusLabel(s.status, `stage-${s.id}`)}${s.canFail ? html` <small>(may fail)</small>` : ""}</td><td><a href="#job-${j.id}">${j.name}</a></td>
<td>${statusLabel(j.status, `job-${j.id}`)}</td><td data-exit-for="job-${j.id}">${j.exitCode ?? ""}</td><td data-duration-for="job-${j.id}">${runTime(j.startedAt, j.finishedAt)}</td></tr>`,
    ),
  );
  return html`<table class="jobs"><thead><tr><th>Stage</th><th>Job</th><th>Status</th><th>Exit code</th><th>Took</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** The head of a build page, up to its output. */
async function buildHead(pool: pg.Pool, b: BuildDetail, stages: StageRow[], after: number, viewer?: PageViewer): Promise<Html> {
  const [variables, objects, artifacts, pushed] = await Promise.all([buildVariables(pool, b.id), buildObjects(pool, b.id), buildArtifacts(pool, b.id), buildTrigger(pool, b.id)]);
  const live = !TERMINAL_STATUSES.includes(b.status);
  const driver = Object.entries(b.driverMap).map(([k, v]) => html`<li>${k}: ${v}</li>`);
  return html`<main id="build" data-build="${b.id}" data-after="${after}" data-live="${live ? "yes" : "no"}">
<h1>Build #${b.id} ${statusLabel(b.status, "build")}</h1>
${viewer ? actions(b, viewer, live) : ""}
<dl class="facts"><dt>Namespace</dt><dd>${b.namespace ?? "none"}</dd><dt>Driver</dt><dd>${b.driver}<ul class="driver">${driver}</ul></dd>
<dt>Submitted</dt><dd>${timeTag(b.createdAt)}</dd><dt>Started</dt><dd>${timeTag(b.startedAt)}</dd><dt>Finished</dt><dd>${timeTag(b.finishedAt)}</dd>
<dt>Took</dt><dd data-duration-for="build">${runTime(b.startedAt, b.finishedAt)}</dd><dt>Worker</dt><dd>${b.worker ?? ""}${b.attempt > 1 ? ` (attempt ${b.attempt})` : ""}</dd>${
    pushed
      ? html`<dt>Pushed</dt><dd class="trigger">${pushed.provider} ${pushed.repository} ${pushed.ref} <code title="${pushed.commit}">${pushed.commit.slice(0, 12)}</code> by ${pushed.author}: ${pushed.message}</dd>`
      : ""
  }</dl>
<h2>Jobs</h2>${jobsTable(stages)}
<h2>Artifacts</h2>${
    artifacts.length === 0
      ? html`<p class="empty">None.</p>`
      : html`<table class="artifacts"><thead><tr><th>Name</th><th>Size</th><th>SHA-256</th></tr></thead><tbody>${artifacts.map(
          (a) => html`<tr><td><a class="artifact" href="/builds/${b.id}/artifacts/${a.id}" download>${a.name}</a></td><td title="${a.size} bytes">${formatBytes(a.size)}</td><td><code>${a.sha256}</code></td></tr>`,
        )}</tbody></table>`
  }
<h2>Variables</h2>${
    variables.length === 0
      ? html`<p class="empty">None added at submission.</p>`
      : html`<table class="variables"><tbody>${variables.map((v) => html`<tr><td><code>${v.key}</code></td><td><code>${v.masked ? MASKED : (v.value ?? "")}</code>${v.masked ? html` <small>(masked)</small>` : ""}</td></tr>`)}</tbody></table>`
  }
<h2>Objects</h2>${objects.length === 0 ? html`<p class="empty">None.</p>` : html`<table class="objects"><tbody>${objects.map((o) => html`<tr><td><code>${o.source}</code></td><td>&rarr;</td><td><code>${o.dest}</code></td></tr>`)}</tbody></table>`}
<h2>Output</h2>
`;
}

/**
 * A build page, in parts: each job's output tail is read and rendered a batch of rows at a time,
 * so the page is never held whole. Output rows up to `after` are on the page; the script's event
 * stream starts after it.
 */
export async function* buildPage(pool: pg.Pool, b: BuildDetail, viewer?: PageViewer): AsyncGenerator<string> {
  const after = await lastOutputId(pool, b.id);
  const stages = await buildStages(pool, b.id);
  const head = await buildHead(pool, b, stages, after, viewer);
  const start = page(`Build #${b.id}`, new Html("\u0000"), viewer).text.split("\u0000");
  yield start[0] + head.text;
  for (const s of stages) {
    for (const j of s.jobs) {
      const raw = `/builds/${b.id}/jobs/${j.id}/raw`;
      const tail = await tailStart(pool, j.id, after, TAIL_BYTES);
      yield html`<section class="job" id="job-${j.id}"><h3>${s.name} / ${j.name} ${statusLabel(j.status, `job-${j.id}`)}</h3>
<p class="raw"><a href="${raw}">Raw log</a>${tail.cut ? html` &middot; <span class="cut">Only the last MiB of this job's output is shown here: the raw log has all of it.</span>` : ""}</p>
<pre class="output" data-job="${j.id}">`.text;
      const ansi = ansiConverter();
      let cursor = tail.afterId;
      let skipBytes = tail.skipBytes;
      for (;;) {
        const rows = await jobOutputRows(pool, j.id, cursor, after);
        for (const row of rows) {
          yield ansi.ansi_to_html(tailOf(row.data, skipBytes));
          skipBytes = 0;
          cursor = row.id;
        }
        if (rows.length < OUTPUT_BATCH) break;
      }
      yield "</pre></section>\n";
    }
  }
  yield html`<h2>Manifest</h2><pre class="manifest">${b.manifest}</pre>\n</main>`.text + start[1];
}
