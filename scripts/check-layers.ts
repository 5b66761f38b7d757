// The layer rule, run by `npm run lint`: reads every import of the project's own source and fails on any arrow
// that points the wrong way. protocol/ imports nothing of ours; renderer/ and electron/ import only protocol/
// of the rest; engine/ never imports renderer/ or electron/; inside engine/ the order is
// cli → api → jobs, schedule → domain folders → native, with no arrow back up; production code never imports
// a test or a test helper (those live in `testing/` folders and `*.test.ts` files beside the tests).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/** Rank of each engine folder: a file may import only its own folder, its own rank or a lower one. */
const engineRanks: Record<string, number> = {
  cli: 4,
  api: 3,
  jobs: 2,
  schedule: 2,
  snapshot: 1,
  tap: 1,
  repository: 1,
  container: 1,
  filesystems: 1,
  partition: 1,
  device: 1,
  'device-mapper': 1,
  backend: 1,
  config: 1,
  drives: 1,
  layout: 1,
  handles: 1,
  'restore-fit': 1,
  'boot-check': 1,
  'volume-files': 1,
  media: 1,
  native: 0,
};
const rankNames = ['native', 'domain folders', 'jobs/schedule', 'api', 'cli'];

/** The trees the rule reads; others (bench/, e2e/, scripts/) are harnesses and may reach anything. */
const checkedTrees = ['protocol', 'renderer/src', 'electron', 'engine'];
const skippedDirs = new Set(['node_modules', 'dist', 'build']);
const sourceFile = /\.(ts|tsx|cts|mts)$/;

export type LayerViolation = { file: string; line: number; target: string; reason: string };

/** Every import specifier in a source text with its line: static, re-export, side-effect and dynamic. */
export function importsOf(text: string): { specifier: string; line: number }[] {
  const found: { specifier: string; line: number }[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/gms,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of text.matchAll(pattern)) {
      const at = match.index + match[0].lastIndexOf(match[1]!);
      found.push({ specifier: match[1]!, line: text.slice(0, at).split('\n').length });
    }
  }
  return found;
}

/** A test or a test helper: may reach across the engine's order (never across runtimes). */
function isTestCode(path: string): boolean {
  return /\.test\.tsx?$/.test(path) || path.split('/').includes('testing');
}

function engineFolder(path: string): string | null {
  const parts = path.split('/');
  return parts[0] === 'engine' && parts.length > 2 ? parts[1]! : null;
}

function treeOf(path: string): string {
  return path.split('/')[0]!;
}

/** Why an import from `from` to `to` (both paths relative to the root) breaks the rule, or null when it is fine. */
export function ruleBroken(from: string, to: string): string | null {
  const fromTree = treeOf(from);
  const toTree = treeOf(to);
  if (!isTestCode(from) && isTestCode(to)) return 'production code never imports tests or test helpers';
  // A test may check what a build script makes (the icons); production code never runs build scripts.
  if (isTestCode(from) && toTree === 'scripts') return null;
  if (fromTree === 'protocol' && toTree !== 'protocol') return 'protocol/ imports nothing of ours';
  if ((fromTree === 'renderer' || fromTree === 'electron') && toTree !== fromTree && toTree !== 'protocol')
    return `${fromTree}/ imports only protocol/ of the rest`;
  if (fromTree === 'engine' && toTree !== 'engine' && toTree !== 'protocol')
    return `engine/ imports only engine/ and protocol/ (not ${toTree}/)`;
  if (fromTree !== 'engine' || toTree !== 'engine' || isTestCode(from)) return null;
  const fromFolder = engineFolder(from);
  const toFolder = engineFolder(to);
  if (fromFolder === null || toFolder === null || fromFolder === toFolder) return null;
  const fromRank = engineRanks[fromFolder];
  const toRank = engineRanks[toFolder];
  if (fromRank === undefined)
    return `engine/${fromFolder}/ has no layer: give it a rank in scripts/check-layers.ts`;
  if (toRank === undefined)
    return `engine/${toFolder}/ has no layer: give it a rank in scripts/check-layers.ts`;
  if (toRank > fromRank)
    return `engine/${fromFolder}/ (${rankNames[fromRank]}) may not import upward from engine/${toFolder}/ (${rankNames[toRank]})`;
  return null;
}

function* sourceFiles(root: string, dir: string): Generator<string> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(join(root, dir), { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  for (const entry of entries) {
    const path = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (!skippedDirs.has(entry.name)) yield* sourceFiles(root, path);
    } else if (entry.isFile() && sourceFile.test(entry.name)) {
      yield path;
    }
  }
}

/** Every broken arrow under root, in file order. */
export function checkLayers(root: string): LayerViolation[] {
  const violations: LayerViolation[] = [];
  for (const tree of checkedTrees) {
    for (const file of sourceFiles(root, tree)) {
      const text = readFileSync(join(root, file), 'utf8');
      for (const { specifier, line } of importsOf(text)) {
        if (!specifier.startsWith('.')) continue; // packages and node: built-ins are biome's to police
        const target = relative(root, resolve(root, dirname(file), specifier))
          .split(sep)
          .join('/');
        if (target.startsWith('..')) {
          violations.push({ file, line, target, reason: 'imports from outside the project' });
          continue;
        }
        const reason = ruleBroken(file, target);
        if (reason) violations.push({ file, line, target, reason });
      }
    }
  }
  return violations;
}

export function formatViolation(v: LayerViolation): string {
  return `${v.file}:${v.line}: imports ${v.target}: ${v.reason}`;
}

if (import.meta.main) {
  // The project's root, or the tree named on the command line (the rule's own test plants arrows in one).
  const root = resolve(process.argv[2] ?? join(import.meta.dirname, '..'));
  const violations = checkLayers(root);
  for (const violation of violations) console.error(formatViolation(violation));
  if (violations.length > 0) {
    console.error(`check-layers: ${violations.length} import(s) break the layer rule`);
    process.exit(1);
  }
}
