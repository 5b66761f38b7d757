// The authorization layer without a daemon: every method of the API has a rule, a method without one is root's,
// and the guarded handlers refuse root-only methods to a user allowed on the socket.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type MethodName, methods } from '../../protocol/messages.ts';
import { authorizeHandlers, callerOf, methodRules, requireRule } from './authorization.ts';
import type { Connection, Handlers } from './dispatcher.ts';
import type { ApiError } from './errors.ts';

function connection(transport: Connection['transport'], uid: number | null): Connection {
  return { id: 1, transport, uid, gids: uid === null ? [] : [uid], sendEvent: () => {}, onClose: () => {} };
}

test('every method of the API has a rule saying what it touches and who may call it', () => {
  const unruled = Object.keys(methods).filter((method) => !Object.hasOwn(methodRules, method));
  assert.deepEqual(
    unruled,
    [],
    'add a rule to methodRules (engine/api/authorization.ts) for each new method',
  );
  for (const [method, rule] of Object.entries(methodRules)) {
    assert.ok(Object.hasOwn(methods, method), `${method} has a rule but is no method`);
    assert.ok(rule.touches.length > 0, `${method} says what it touches`);
  }
});

test("a user on the socket is not privileged; root, the own uid and the engine's own transports are", () => {
  const own = process.getuid?.() ?? 0;
  assert.equal(callerOf(connection('unix', 64123)).privileged, own === 64123);
  assert.equal(callerOf(connection('unix', 0)).privileged, true);
  assert.equal(callerOf(connection('in-process', own)).privileged, true);
  assert.equal(callerOf(connection('websocket', null)).privileged, true);
});

test('root-only methods, and any method without a rule, are forbidden to a user; the others reach their handler', async () => {
  const user = callerOf(connection('unix', 64123));
  if (user.privileged) return;
  assert.throws(
    () => requireRule('schedules.setPaused', user),
    (error: ApiError) =>
      error.code === 'forbidden' &&
      error.message === 'schedules.setPaused is for root only; ask an administrator.',
  );
  assert.throws(
    () => requireRule('no.such.method' as MethodName, user),
    (error: ApiError) => error.code === 'forbidden',
  );
  const reached: string[] = [];
  const handlers = Object.fromEntries(
    Object.keys(methods).map((method) => [method, () => reached.push(method)]),
  ) as unknown as Handlers;
  const guarded = authorizeHandlers(handlers);
  for (const method of Object.keys(methods) as MethodName[]) {
    const call = () =>
      (guarded[method] as (params: unknown, connection: Connection) => unknown)(
        {},
        connection('unix', 64123),
      );
    if (methodRules[method].who === 'root')
      assert.throws(call, (error: ApiError) => error.code === 'forbidden');
    else call();
  }
  assert.deepEqual(
    reached,
    Object.keys(methods).filter((method) => methodRules[method as MethodName].who !== 'root'),
  );
});
