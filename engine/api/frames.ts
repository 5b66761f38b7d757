// Splits a byte stream into newline-delimited JSON frames, refusing any frame longer than
// MAX_MESSAGE_BYTES before it is parsed or even fully buffered: an oversized frame is skipped up to its
// newline and reported once, so one bad client message never costs the daemon more than the limit in memory.
import { MAX_MESSAGE_BYTES } from '../../protocol/constants.ts';

export type Frame = { kind: 'frame'; text: string } | { kind: 'oversized'; bytes: number };

export class FrameDecoder {
  readonly maxBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Bytes of an oversized frame skipped so far; -1 when not skipping. */
  #skipped = -1;

  constructor(maxBytes = MAX_MESSAGE_BYTES) {
    this.maxBytes = maxBytes;
  }

  /** Feeds bytes, returns the frames they complete (in order). */
  push(data: Buffer): Frame[] {
    const frames: Frame[] = [];
    let rest = data;
    while (rest.length > 0) {
      const newline = rest.indexOf(0x0a);
      const piece = newline === -1 ? rest : rest.subarray(0, newline);
      if (this.#skipped >= 0) {
        this.#skipped += piece.length;
      } else if (this.#buffered + piece.length > this.maxBytes) {
        this.#skipped = this.#buffered + piece.length;
        this.#chunks = [];
        this.#buffered = 0;
      } else if (piece.length > 0) {
        // Copy: the caller may reuse its buffer.
        this.#chunks.push(Buffer.from(piece));
        this.#buffered += piece.length;
      }
      if (newline === -1) break;
      if (this.#skipped >= 0) {
        frames.push({ kind: 'oversized', bytes: this.#skipped });
        this.#skipped = -1;
      } else if (this.#buffered > 0) {
        const text = Buffer.concat(this.#chunks, this.#buffered).toString('utf8');
        this.#chunks = [];
        this.#buffered = 0;
        if (text.trim() !== '') frames.push({ kind: 'frame', text });
      }
      rest = rest.subarray(newline + 1);
    }
    return frames;
  }
}

/** One frame on the wire: the message as JSON and a newline (JSON.stringify never emits a raw newline). */
export function encodeFrame(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}

/**
 * The message as JSON, kept within MAX_MESSAGE_BYTES (clients drop anything bigger): an oversized response
 * becomes an error response saying so; an oversized event is dropped (null).
 */
export function encodeBounded(
  message: { type: string; id?: number; [key: string]: unknown },
  maxBytes = MAX_MESSAGE_BYTES,
): string | null {
  const text = JSON.stringify(message);
  if (text.length <= maxBytes || Buffer.byteLength(text) <= maxBytes) return text;
  if (message.type !== 'response') return null;
  return JSON.stringify({
    type: 'response',
    id: message.id,
    ok: false,
    error: {
      code: 'failed',
      message: `The answer is ${Buffer.byteLength(text)} bytes, over the ${maxBytes}-byte message limit; ask for less.`,
    },
  });
}
