// What kind of failure an error is, whatever layer throws it and whatever carries it (a job record, an API
// error, an exception): damage found in stored data, a refusal to act for safety, bad input, or a plain failure.
// Only the CLI's edge turns a kind into an exit code; nothing below it knows exit numbers.

export type FailureKind = 'damage' | 'refusal' | 'usage' | 'failure';

/** An error that says what kind of failure it is. */
export class KindedError extends Error {
  readonly kind: FailureKind;
  constructor(kind: FailureKind, message: string) {
    super(message);
    this.kind = kind;
  }
}

/** Refused for safety: acting would destroy data in use or give a silently inconsistent copy. */
export class RefusalError extends KindedError {
  constructor(message: string) {
    super('refusal', message);
  }
}

/** Stored data is damaged or missing; `report` holds the details when a check produced them. */
export class DamageError extends KindedError {
  readonly report: Record<string, unknown> | null;
  constructor(message: string, report: Record<string, unknown> | null = null) {
    super('damage', message);
    this.report = report;
  }
}

/** Bad input from the caller (an option, a path that is not what it must be). */
export class UsageError extends KindedError {
  constructor(message: string) {
    super('usage', message);
  }
}

/** The kind of any thrown value: its own when it says, otherwise a plain failure. */
export function failureKindOf(error: unknown): FailureKind {
  return error instanceof KindedError ? error.kind : 'failure';
}
