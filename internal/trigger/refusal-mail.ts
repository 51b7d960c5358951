// A pushed manifest that was refused never reaches a worker, so no worker mails its failure: the
// one that started it does, as the daemon would have (the same message, to the commit's author).
import type { WorkerConfig } from "../config/config.js";
import type { Logger } from "../log/log.js";
import { triggerLine } from "../store/triggers.js";
import { isEmailAddress } from "../submission/submission.js";
import type { Push, TriggerResult } from "./trigger.js";
import { triggerOf } from "./trigger.js";

/**
 * Mails the failure of each refused manifest of `started` to the push's author, when worker.toml
 * has [smtp]. Never throws: a mail that cannot go is a log line (the build row says it all).
 */
export async function mailRefusedBuilds(cfg: WorkerConfig, log: Logger, push: Push, started: TriggerResult, opts: { retries?: number } = {}): Promise<void> {
  if (!cfg.smtp || started.redelivery) return;
  const refused = started.builds.filter((b) => b.refused !== undefined);
  const email = push.author.email;
  if (refused.length === 0 || !email || !isEmailAddress(email)) return;
  const { Mailer } = await import("../mail/mail.js");
  const mailer = new Mailer(cfg.smtp, log, { retries: opts.retries });
  try {
    // sendBuildFailure does not throw: a mail it cannot send is its own log line.
    for (const b of refused) await mailer.sendBuildFailure({ id: String(b.id), status: "failed", notify: [email], outputTail: [b.refused!], trigger: triggerLine(triggerOf(push)) }, log.child({ build: b.id }));
  } finally {
    mailer.close();
  }
}
