import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { checkLayers, formatViolation, importsOf } from './check-layers.ts';

const projectRoot = resolve(import.meta.dirname, '..');

/** A small project laid out like ours, with only allowed arrows. */
const cleanTree: Record<string, string> = {
  'protocol/model.ts': 'export type Job = { id: string };\n',
  'protocol/messages.ts': "import type { Job } from './model.ts';\nexport type M = Job;\n",
  'renderer/src/App.tsx':
    "import type { Job } from '../../protocol/model.ts';\nexport const app = (j: Job) => j;\n",
  'electron/main.ts': "import type { M } from '../protocol/messages.ts';\nexport const m = (x: M) => x;\n",
  'engine/native/index.ts': 'export const native = 1;\n',
  'engine/snapshot/session.ts': "import { native } from '../native/index.ts';\nexport const s = native;\n",
  'engine/tap/attach.ts': "import { s } from '../snapshot/session.ts';\nexport const t = s;\n",
  'engine/jobs/backup.ts': "import { t } from '../tap/attach.ts';\nexport const b = t;\n",
  'engine/schedule/scheduler.ts': "import { b } from '../jobs/backup.ts';\nexport const sc = b;\n",
  'engine/api/engine.ts':
    "import type { Job } from '../../protocol/model.ts';\nimport { sc } from '../schedule/scheduler.ts';\nexport const e = (j: Job) => [j, sc];\n",
  'engine/cli/main.ts': "const { e } = await import('../api/engine.ts');\nexport { e };\n",
  'engine/testing/disk.ts': "import { e } from '../api/engine.ts';\nexport const d = e;\n",
  'engine/tap/attach.test.ts':
    "import { d } from '../testing/disk.ts';\nimport { e } from '../api/engine.ts';\n[d, e];\n",
};

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'diskline-layers-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function layOut(tree: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(root, 'tree-'));
  for (const [path, text] of Object.entries(tree)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

/** The violations after adding one line to one file of the clean tree. */
async function violationsWith(file: string, line: string): Promise<string[]> {
  const tree = { ...cleanTree, [file]: `${line}\n${cleanTree[file] ?? ''}` };
  return checkLayers(await layOut(tree)).map(formatViolation);
}

test('the clean tree passes: tests and test helpers may reach across the engine order', async () => {
  assert.deepEqual(checkLayers(await layOut(cleanTree)), []);
});

test('renderer → engine fails', async () => {
  assert.deepEqual(
    await violationsWith(
      'renderer/src/App.tsx',
      "import { Repository } from '../../engine/repository/repository.ts';",
    ),
    [
      'renderer/src/App.tsx:1: imports engine/repository/repository.ts: renderer/ imports only protocol/ of the rest',
    ],
  );
});

test('electron → engine fails', async () => {
  assert.deepEqual(await violationsWith('electron/main.ts', "import '../engine/api/engine.ts';"), [
    'electron/main.ts:1: imports engine/api/engine.ts: electron/ imports only protocol/ of the rest',
  ]);
});

test('engine → electron and engine → renderer fail, even from a test', async () => {
  assert.deepEqual(
    await violationsWith(
      'engine/api/engine.ts',
      "import type { Link } from '../../electron/engine-supervisor.ts';",
    ),
    [
      'engine/api/engine.ts:1: imports electron/engine-supervisor.ts: engine/ imports only engine/ and protocol/ (not electron/)',
    ],
  );
  assert.deepEqual(
    await violationsWith('engine/tap/attach.test.ts', "import { App } from '../../renderer/src/App.tsx';"),
    [
      'engine/tap/attach.test.ts:1: imports renderer/src/App.tsx: engine/ imports only engine/ and protocol/ (not renderer/)',
    ],
  );
});

test('domain → api fails, and so does every other arrow back up the engine', async () => {
  assert.deepEqual(
    await violationsWith('engine/tap/attach.ts', "import type { EventBus } from '../api/events.ts';"),
    [
      'engine/tap/attach.ts:1: imports engine/api/events.ts: engine/tap/ (domain folders) may not import upward from engine/api/ (api)',
    ],
  );
  assert.deepEqual(
    await violationsWith('engine/api/engine.ts', "import { ExitCode } from '../cli/verb.ts';"),
    [
      'engine/api/engine.ts:1: imports engine/cli/verb.ts: engine/api/ (api) may not import upward from engine/cli/ (cli)',
    ],
  );
  assert.deepEqual(
    await violationsWith('engine/schedule/scheduler.ts', "export { EventBus } from '../api/events.ts';"),
    [
      'engine/schedule/scheduler.ts:1: imports engine/api/events.ts: engine/schedule/ (jobs/schedule) may not import upward from engine/api/ (api)',
    ],
  );
  assert.deepEqual(
    await violationsWith('engine/native/index.ts', "const { s } = await import('../snapshot/session.ts');"),
    [
      'engine/native/index.ts:1: imports engine/snapshot/session.ts: engine/native/ (native) may not import upward from engine/snapshot/ (domain folders)',
    ],
  );
});

test('protocol → anything of ours fails', async () => {
  assert.deepEqual(
    await violationsWith('protocol/model.ts', "import type { Plan } from '../engine/config/state.ts';"),
    ['protocol/model.ts:1: imports engine/config/state.ts: protocol/ imports nothing of ours'],
  );
  assert.deepEqual(
    await violationsWith('protocol/model.ts', "import { x } from '../renderer/src/App.tsx';"),
    ['protocol/model.ts:1: imports renderer/src/App.tsx: protocol/ imports nothing of ours'],
  );
});

test('production code that imports a test helper fails; a folder without a layer is named', async () => {
  assert.deepEqual(await violationsWith('engine/jobs/backup.ts', "import { d } from '../testing/disk.ts';"), [
    'engine/jobs/backup.ts:1: imports engine/testing/disk.ts: production code never imports tests or test helpers',
  ]);
  assert.deepEqual(
    await violationsWith('engine/gadgets/thing.ts', "import { b } from '../jobs/backup.ts';"),
    [
      'engine/gadgets/thing.ts:1: imports engine/jobs/backup.ts: engine/gadgets/ has no layer: give it a rank in scripts/check-layers.ts',
    ],
  );
});

test('imports spread over several lines, re-exports and dynamic imports are all read, with their lines', () => {
  const text = [
    "import {\n  a,\n  b,\n} from './one.ts';",
    "export * from './two.ts';",
    "const three = await import('./three.ts');",
    "import './four.ts';",
    "import type { Five } from './five.ts';",
  ].join('\n');
  assert.deepEqual(
    importsOf(text)
      .map(({ specifier, line }) => `${line} ${specifier}`)
      .sort(),
    ['4 ./one.ts', '5 ./two.ts', '6 ./three.ts', '7 ./four.ts', '8 ./five.ts'].sort(),
  );
});

test('the project itself passes, and npm run lint fails with the broken arrow named', async () => {
  assert.deepEqual(checkLayers(projectRoot).map(formatViolation), []);
  const planted = await layOut({ ...cleanTree, 'engine/jobs/backup.ts': "import '../api/engine.ts';\n" });
  const run = promisify(execFile)(process.execPath, [join(import.meta.dirname, 'check-layers.ts'), planted]);
  const error = await run.then(
    () => null,
    (failure: { code: number; stderr: string }) => failure,
  );
  assert.equal(error?.code, 1);
  assert.equal(
    error?.stderr,
    'engine/jobs/backup.ts:1: imports engine/api/engine.ts: engine/jobs/ (jobs/schedule) may not import upward from engine/api/ (api)\n' +
      'check-layers: 1 import(s) break the layer rule\n',
  );
});
