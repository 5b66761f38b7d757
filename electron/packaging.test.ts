// electron-builder.yml checked by electron-builder itself: its schema, then a real `--linux dir` packaging
// run (with a stand-in for the Electron binary, which cannot be downloaded everywhere) whose output must
// hold a working engine, the built shell and renderer, the icons the shell loads, and the deb's scripts.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const root = join(import.meta.dirname, '..');
const require = createRequire(import.meta.url);

type BuilderConfig = Record<string, unknown> & {
  files: string[];
  deb: { afterInstall: string; afterRemove: string; depends: string[] };
  linux: { icon: string; target: string[] };
  win: { icon: string };
  mac: { icon: string };
};

async function loadConfig(): Promise<BuilderConfig> {
  const { getConfig, validateConfiguration } = require('app-builder-lib/out/util/config/config.js') as {
    getConfig(dir: string, path: string | null, options: null): Promise<BuilderConfig>;
    validateConfiguration(config: BuilderConfig, logger: { isEnabled: boolean; add(): void }): Promise<void>;
  };
  const config = await getConfig(root, join(root, 'electron-builder.yml'), null);
  await validateConfiguration(config, { isEnabled: false, add() {} });
  return config;
}

test('electron-builder accepts the configuration, and every file it names exists', async () => {
  const config = await loadConfig();
  assert.equal(config.productName, 'Diskline');
  assert.deepEqual(config.linux.target, ['AppImage', 'deb']);
  for (const path of [
    config.linux.icon,
    config.win.icon,
    config.mac.icon,
    config.deb.afterInstall,
    config.deb.afterRemove,
  ]) {
    assert.ok(existsSync(join(root, path)), `${path} exists`);
  }
  assert.ok(config.deb.depends.includes('fuse3'));
  // The deb scripts are plain sh: a syntax error would fail the package's installation.
  for (const script of [config.deb.afterInstall, config.deb.afterRemove])
    execFileSync('sh', ['-n', join(root, script)]);
});

test('a Linux package holds the shell, the renderer, the icons and an engine that runs', {
  timeout: 120_000,
}, async (t) => {
  const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    main: string;
  };
  for (const built of [packageJson.main, 'renderer/dist/index.html']) {
    if (!existsSync(join(root, built))) return t.skip(`${built} is not built: run npm run build first`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'diskline-package-'));
  try {
    // A stand-in Electron distribution: electron-builder copies it and renames the binary.
    const electronDist = join(dir, 'electron-dist');
    await mkdir(electronDist);
    await writeFile(join(electronDist, 'electron'), '#!/bin/sh\necho stand-in\n');
    await chmod(join(electronDist, 'electron'), 0o755);
    const out = join(dir, 'out');
    await promisify(execFile)(
      join(root, 'node_modules', '.bin', 'electron-builder'),
      [
        '--linux',
        'dir',
        `-c.electronDist=${electronDist}`,
        `-c.directories.output=${out}`,
        '--publish',
        'never',
      ],
      { cwd: root, env: { ...process.env, ELECTRON_SKIP_BINARY_DOWNLOAD: '1' } },
    );
    const unpacked = join(out, 'linux-unpacked');
    const app = join(unpacked, 'resources', 'app');
    for (const path of [
      packageJson.main,
      'electron/dist/electron/preload.cjs',
      'electron/dist/protocol/messages.js',
      'renderer/dist/index.html',
      'assets/icons/512x512.png',
      'assets/tray/tray-busy.png',
      'assets/tray/tray-busy@2x.png',
      'engine/cli/main.ts',
      'node_modules/zod/package.json',
      'node_modules/@vscode/sudo-prompt/index.js',
      'node_modules/node/bin/node',
    ]) {
      assert.ok(existsSync(join(app, path)), `resources/app/${path} is packaged`);
    }
    assert.ok(!existsSync(join(app, 'electron', 'shell.test.ts')), 'tests are not packaged');
    assert.ok(!existsSync(join(app, 'node_modules', 'electron')), 'the electron npm package is not packaged');
    assert.ok(existsSync(join(unpacked, 'diskline-desktop')));
    assert.ok(existsSync(join(unpacked, 'packaging', 'linux', 'deb-after-install.sh')));
    // The packaged engine runs on the packaged Node.
    const help = execFileSync(join(app, 'bin', 'diskline'), ['--help'], { encoding: 'utf8' });
    assert.match(help, /daemon \[--socket PATH\]/);
    // The shell's modules resolve their runtime imports (protocol, zod) inside the package.
    const shellModule = join(app, 'electron', 'dist', 'electron', 'shell.js');
    const loaded = execFileSync(
      join(app, 'node_modules', 'node', 'bin', 'node'),
      ['-e', `import(${JSON.stringify(shellModule)}).then((m) => console.log(typeof m.startShell))`],
      { encoding: 'utf8' },
    );
    assert.equal(loaded.trim(), 'function');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
