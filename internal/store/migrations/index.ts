// The schema this worker owns, as numbered steps. A step is never edited once released: changes
// are new steps, so every database reaches the same shape by applying the missing ones in order.
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: "builds, stages, jobs, output, artifacts, objects, variables, keys",
    sql: `
CREATE TABLE builds (
  id               bigserial PRIMARY KEY,
  status           text NOT NULL DEFAULT 'queued',
  secret           text NOT NULL,
  driver           jsonb NOT NULL,
  manifest         text NOT NULL,
  namespace        text,
  notify           text[] NOT NULL DEFAULT '{}',
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz,
  worker           text,
  attempt          integer NOT NULL DEFAULT 0,
  lease_expires_at timestamptz
);
CREATE INDEX builds_status_idx ON builds (status);

CREATE TABLE stages (
  id         bigserial PRIMARY KEY,
  build_id   bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
  position   integer NOT NULL,
  name       text NOT NULL,
  can_fail   boolean NOT NULL DEFAULT false,
  status     text NOT NULL DEFAULT 'queued',
  started_at  timestamptz,
  finished_at timestamptz,
  UNIQUE (build_id, name)
);

CREATE TABLE jobs (
  id          bigserial PRIMARY KEY,
  build_id    bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
  stage_id    bigint NOT NULL REFERENCES stages (id) ON DELETE CASCADE,
  position    integer NOT NULL,
  name        text NOT NULL,
  commands    text NOT NULL DEFAULT '',
  status      text NOT NULL DEFAULT 'queued',
  exit_code   integer,
  output_bytes bigint NOT NULL DEFAULT 0,
  started_at  timestamptz,
  finished_at timestamptz,
  UNIQUE (stage_id, name)
);
CREATE INDEX jobs_build_idx ON jobs (build_id);

-- A job's output, appended in chunks as it is printed; read back in id order.
CREATE TABLE job_output (
  id       bigserial PRIMARY KEY,
  build_id bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
  job_id   bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  data     text NOT NULL
);
CREATE INDEX job_output_build_idx ON job_output (build_id, id);
CREATE INDEX job_output_job_idx ON job_output (job_id, id);

CREATE TABLE artifacts (
  id         bigserial PRIMARY KEY,
  build_id   bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
  job_id     bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  source     text NOT NULL,
  name       text NOT NULL,
  size       bigint NOT NULL,
  sha256     text NOT NULL,
  path       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE objects (
  id       bigserial PRIMARY KEY,
  build_id bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
  source   text NOT NULL,
  dest     text NOT NULL
);

-- A masked variable's value is only ever stored encrypted (value_encrypted), never in value.
CREATE TABLE variables (
  id              bigserial PRIMARY KEY,
  build_id        bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
  position        integer NOT NULL,
  key             text NOT NULL,
  value           text,
  masked          boolean NOT NULL DEFAULT false,
  value_encrypted bytea,
  CHECK ((masked AND value IS NULL AND value_encrypted IS NOT NULL) OR (NOT masked AND value IS NOT NULL))
);

CREATE TABLE keys (
  id                    bigserial PRIMARY KEY,
  build_id              bigint NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
  name                  text NOT NULL,
  private_key_encrypted bytea NOT NULL,
  UNIQUE (build_id, name)
);
`,
  },
  {
    version: 2,
    name: "builds.manifest_encrypted: the manifest as submitted when it holds a masked value",
    sql: `
-- When the manifest text contains a masked variable's value, builds.manifest holds it masked
-- (xxxxxx) and this column the text as submitted, encrypted like the variable.
ALTER TABLE builds ADD COLUMN manifest_encrypted bytea;
`,
  },
  {
    version: 3,
    name: "builds.runs: the token of every claim, naming what each run leaves on the host",
    sql: `
-- One token per claim, oldest first: what a run leaves on the host (workspaces, containers,
-- machines) carries its token, so the worker that takes the build over reaps exactly the
-- earlier runs of this build in this database, never another installation's build with the
-- same id.
ALTER TABLE builds ADD COLUMN runs text[] NOT NULL DEFAULT '{}';
`,
  },
  {
    version: 4,
    name: "status columns hold only the statuses this worker knows",
    sql: `
-- Djinn's seven build statuses; a stage or job that never ran because its build stopped first
-- is skipped. A word outside these (a typo in a producer, another program's status) is refused
-- when it is written rather than found when it is read.
ALTER TABLE builds ADD CONSTRAINT builds_status_known
  CHECK (status IN ('queued', 'running', 'passed', 'passed_with_failures', 'failed', 'killed', 'timed_out'));
ALTER TABLE stages ADD CONSTRAINT stages_status_known
  CHECK (status IN ('queued', 'running', 'passed', 'passed_with_failures', 'failed', 'killed', 'timed_out', 'skipped'));
ALTER TABLE jobs ADD CONSTRAINT jobs_status_known
  CHECK (status IN ('queued', 'running', 'passed', 'passed_with_failures', 'failed', 'killed', 'timed_out', 'skipped'));
`,
  },
  {
    version: 5,
    name: "indexes for the web process's builds list: newest first, by status and by namespace",
    sql: `
-- The list pages by id (keyset: id < the last one shown), newest first; a filter on status or
-- namespace walks these from its newest build instead of scanning every build.
CREATE INDEX builds_status_id_idx ON builds (status, id);
CREATE INDEX builds_namespace_id_idx ON builds (namespace, id);
`,
  },
  {
    version: 6,
    name: "web users, API tokens and sign-in sessions, each secret stored only as a hash",
    sql: `
-- A password is stored as its scrypt hash (with its salt and cost), an API token and a session
-- as the SHA-256 of the token: a copy of these rows signs nobody in.
CREATE TABLE web_users (
  id            bigserial PRIMARY KEY,
  name          text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
-- prefix is the token's public id (in the token itself, shown by token list and accepted by token rm).
CREATE TABLE web_tokens (
  id           bigserial PRIMARY KEY,
  user_id      bigint NOT NULL REFERENCES web_users (id) ON DELETE CASCADE,
  prefix       text NOT NULL UNIQUE,
  token_sha256 text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz
);
CREATE TABLE web_sessions (
  token_sha256 text PRIMARY KEY,
  user_id      bigint NOT NULL REFERENCES web_users (id) ON DELETE CASCADE,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL
);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);
`,
  },
  {
    version: 7,
    name: "build_triggers and deliveries: the push that started a build, and each webhook delivery taken once",
    sql: `
-- What started a build pushed to a repository: shown with the build, and its author mailed when it fails.
CREATE TABLE build_triggers (
  build_id   bigint PRIMARY KEY REFERENCES builds (id) ON DELETE CASCADE,
  provider   text NOT NULL,
  repository text NOT NULL,
  ref        text NOT NULL,
  commit     text NOT NULL,
  author     text NOT NULL DEFAULT '',
  message    text NOT NULL DEFAULT ''
);

-- One row per webhook delivery (or pushed ref) that was acted on, written in the same transaction
-- as its builds: a redelivery finds it and starts nothing.
CREATE TABLE deliveries (
  provider    text NOT NULL,
  delivery    text NOT NULL,
  builds      bigint[] NOT NULL DEFAULT '{}',
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, delivery)
);
`,
  },
  {
    version: 8,
    name: "forge_statuses: the commit status last posted for each pushed build, and the manifest it came from",
    sql: `
-- The manifest's path in the pushed repository: the status's context (djinn-worker/<path>).
ALTER TABLE build_triggers ADD COLUMN manifest text NOT NULL DEFAULT '';

-- The build status last posted to the forge for a pushed build, so each change is posted once
-- however many web processes run; sending_until claims the posting for one process a while.
CREATE TABLE forge_statuses (
  build_id      bigint PRIMARY KEY REFERENCES builds (id) ON DELETE CASCADE,
  status        text,
  sending_until timestamptz,
  updated_at    timestamptz NOT NULL DEFAULT now()
);
`,
  },
  {
    version: 9,
    name: "job output compressed with lz4 where the server has it",
    sql: `
-- Build output is stored as fast as a job prints it: pglz, the default, compresses a chunk at a
-- fraction of that speed, lz4 at several times it. A server built without lz4 keeps pglz.
DO $$
BEGIN
  ALTER TABLE job_output ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
  NULL;
END
$$;
`,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;
