// Turns one request frame into one response: parse, check the envelope, find the method, validate its
// params with the protocol's schema, run the handler, validate its result. Never throws: every failure,
// from malformed JSON to a handler's exception, becomes an error response the client can show.
import type { z } from 'zod';
import { type FailureKind, failureKindOf } from '../../protocol/failure.ts';
import {
  type ErrorCode,
  type EventName,
  type MethodName,
  methods,
  RequestSchema,
  type Response,
  type Result,
} from '../../protocol/messages.ts';
import { ApiError } from './errors.ts';

/** The API's answer to an error that says its kind: a refusal is 'refused', damage 'damaged', bad input 'bad-request'. */
const codeOfKind: Record<FailureKind, ErrorCode> = {
  refusal: 'refused',
  damage: 'damaged',
  usage: 'bad-request',
  failure: 'failed',
};

/** Who is on the other end of a connection, and how to reach it with events. */
export interface Connection {
  readonly id: number;
  readonly transport: 'unix' | 'websocket' | 'in-process';
  /** The peer's uid when the transport can tell (unix socket), else null. */
  readonly uid: number | null;
  /** The peer's primary and supplementary groups, when the transport can tell. */
  readonly gids?: readonly number[];
  sendEvent(event: EventName, data: unknown): void;
  /** Runs `cleanup` when the connection closes (subscriptions end with it). */
  onClose(cleanup: () => void): void;
}

export type Handler<M extends MethodName> = (
  params: z.output<(typeof methods)[M][0]>,
  connection: Connection,
) => Promise<Result<M>> | Result<M>;
export type Handlers = { [M in MethodName]: Handler<M> };

/** Id used in the response to a frame whose own id cannot be read (not JSON, no numeric id). */
export const UNREADABLE_REQUEST_ID = -1;

function failure(id: number, code: ErrorCode, message: string): Response {
  return { type: 'response', id, ok: false, error: { code, message } };
}

function issuesText(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.length ? issue.path.join('.') : '(params)'}: ${issue.message}`)
    .join('; ');
}

function isMethod(name: string): name is MethodName {
  return Object.hasOwn(methods, name);
}

export async function dispatch(text: string, handlers: Handlers, connection: Connection): Promise<Response> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return failure(
      UNREADABLE_REQUEST_ID,
      'bad-request',
      `Message is not valid JSON: ${(error as Error).message}`,
    );
  }
  // A request without params means empty params.
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !('params' in value)) {
    value = { ...value, params: {} };
  }
  const envelope = RequestSchema.safeParse(value);
  if (!envelope.success) {
    const id = (value as { id?: unknown } | null)?.id;
    return failure(
      Number.isInteger(id) ? (id as number) : UNREADABLE_REQUEST_ID,
      'bad-request',
      `Message is not a request ({type: 'request', id, method, params}): ${issuesText(envelope.error)}`,
    );
  }
  const { id, method } = envelope.data;
  if (!isMethod(method)) {
    return failure(id, 'unknown-method', `Unknown method '${method}'.`);
  }
  const [paramsSchema, resultSchema] = methods[method];
  const params = (paramsSchema as z.ZodType).safeParse(envelope.data.params);
  if (!params.success) {
    return failure(id, 'bad-request', `Invalid params for ${method}: ${issuesText(params.error)}`);
  }
  let result: unknown;
  try {
    const handler = handlers[method] as (params: unknown, connection: Connection) => unknown;
    result = await handler(params.data, connection);
  } catch (error) {
    if (error instanceof ApiError) return failure(id, error.code, error.message);
    return failure(id, codeOfKind[failureKindOf(error)], (error as Error)?.message ?? String(error));
  }
  const checked = (resultSchema as z.ZodType).safeParse(result);
  if (!checked.success) {
    return failure(
      id,
      'failed',
      `Engine bug: ${method} produced an invalid result (${issuesText(checked.error)}).`,
    );
  }
  return { type: 'response', id, ok: true, result: checked.data };
}
