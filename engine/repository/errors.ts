// The repository's errors, each saying what kind of failure it is (protocol/failure.ts): damage found in what
// is stored, a refusal for safety, or a plain failure.
import { type FailureKind, KindedError } from '../../protocol/failure.ts';

export class RepositoryError extends KindedError {
  constructor(message: string, kind: FailureKind = 'failure') {
    super(kind, message);
  }
}

/** Something stored is damaged or missing. */
export class DamagedRepositoryError extends RepositoryError {
  constructor(message: string) {
    super(message, 'damage');
  }
}

/** A file listed a moment ago is gone: damage, unless a concurrent prune replaced it (callers that know retry). */
export class MissingFileError extends DamagedRepositoryError {}
