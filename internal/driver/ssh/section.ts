// The [ssh] section of driver.toml. Engine-free: the engine module imports its settings from here.
import type { SectionSpec } from "../../settings/spec.js";
import type { DriverSection } from "../section.js";

export interface SshConfig {
  timeoutMs: number;
  user: string;
  key?: string;
  password?: string;
}

const spec: SectionSpec = {
  keys: {
    timeout: { kind: "duration", default: "60s", integerSeconds: true, doc: 'How long to keep trying to connect: a duration ("60s") or a whole number of seconds (60).' },
    user: { kind: "string", default: "root", doc: "User to log in as." },
    key: { kind: "string", doc: "Private key file." },
    password: { kind: "string", secret: true, doc: "Password for password authentication (tried after the key, when both are set)." },
  },
};

export const sshSection: DriverSection<"ssh", SshConfig> = {
  name: "ssh",
  spec,
  settings: (v) => ({ timeoutMs: v.timeout as number, user: v.user as string, key: v.key as string | undefined, password: v.password as string | undefined }),
  shown: ({ timeoutMs, ...rest }) => ({ ...rest, timeout: timeoutMs }),
};
