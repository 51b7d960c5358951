// The read-only JSON API: the list, a build with its stages, jobs and artifacts, and a job's output.
import type { FastifyInstance } from "fastify";
import { existingBuild, sendJobText, type WebDeps } from "./routes.js";
import { parseFilter } from "./params.js";
import { buildTrigger } from "../store/triggers.js";
import { buildArtifacts, buildObjects, buildStages, buildVariables, listBuilds, type BuildRow } from "./queries.js";

function buildJson(b: BuildRow) {
  return { id: b.id, status: b.status, namespace: b.namespace, driver: b.driver, created_at: b.createdAt, started_at: b.startedAt, finished_at: b.finishedAt };
}

export function registerApi(app: FastifyInstance, deps: WebDeps): void {
  const { pool } = deps;

  app.get("/api/builds", async (req) => {
    const f = parseFilter(req.query);
    const { builds, next } = await listBuilds(pool, f);
    return { builds: builds.map(buildJson), next: next ?? null };
  });

  app.get("/api/builds/:id", async (req) => {
    const b = await existingBuild(pool, (req.params as Record<string, string>).id);
    const [stages, artifacts, variables, objects, trigger] = await Promise.all([buildStages(pool, b.id), buildArtifacts(pool, b.id), buildVariables(pool, b.id), buildObjects(pool, b.id), buildTrigger(pool, b.id)]);
    return {
      ...buildJson(b),
      worker: b.worker,
      attempt: b.attempt,
      driver_config: b.driverMap,
      stages: stages.map((s) => ({
        id: s.id,
        name: s.name,
        status: s.status,
        can_fail: s.canFail,
        started_at: s.startedAt,
        finished_at: s.finishedAt,
        jobs: s.jobs.map((j) => ({ id: j.id, name: j.name, status: j.status, exit_code: j.exitCode, output_bytes: j.outputBytes, started_at: j.startedAt, finished_at: j.finishedAt })),
      })),
      artifacts: artifacts.map((a) => ({ id: a.id, job_id: a.jobId, name: a.name, size: a.size, sha256: a.sha256, url: `/builds/${b.id}/artifacts/${a.id}` })),
      // A masked variable's value is not in the database in clear, and is not here at all.
      variables: variables.map((v) => (v.masked ? { key: v.key, masked: true } : { key: v.key, value: v.value, masked: false })),
      objects,
      // The push that started it (provider, repository, ref, commit, author, message); null for a submitted build.
      trigger: trigger ?? null,
    };
  });

  // The output stored so far; /builds/<id>/jobs/<job>/raw follows a running job.
  app.get("/api/builds/:id/jobs/:job/output", (req, reply) => sendJobText(deps, req, reply, false));
}
