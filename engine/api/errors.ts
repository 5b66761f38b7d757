// The error an API method throws to answer with a specific code ('not-found', 'refused', 'busy', …);
// anything else a method throws is answered as 'failed' with its message.
import type { ErrorCode } from '../../protocol/messages.ts';

export class ApiError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
