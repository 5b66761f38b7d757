// The repository's errors, each with the exit code the CLI reports (see engine/cli/verb.ts ExitCode).

/** 1 = failed, 3 = refused for safety, 4 = damaged data found. */
export class RepositoryError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Something stored is damaged or missing; exit code 4. */
export class DamagedRepositoryError extends RepositoryError {
  constructor(message: string) {
    super(message, 4);
  }
}

/** A file listed a moment ago is gone: damage, unless a concurrent prune replaced it (callers that know retry). */
export class MissingFileError extends DamagedRepositoryError {}
