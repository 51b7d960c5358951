// What kind of failure an error is, declared by the class that is thrown: every error an operator
// can cause extends one of these two, and internal/cli/failure.ts turns the kind into one line and
// an exit code. Anything else is a defect of the worker.

/** The operator typed or wrote something wrong (a flag, a build id, a manifest): exit 2. */
export class InputError extends Error {
  override name = "InputError";
}

/**
 * A file, server or permission the configuration names is missing, unreachable or unusable, or
 * the configuration itself is wrong: exit 1, or the code a case documents (`exitCode`).
 */
export class EnvironmentError extends Error {
  override name = "EnvironmentError";
  readonly exitCode: number;
  constructor(message: string, options?: ErrorOptions & { exitCode?: number }) {
    super(message, options);
    this.exitCode = options?.exitCode ?? 1;
  }
}
