/**
 * Bare Aedes as published, even though the workspace patches it.
 *
 * Bastion patches Aedes and some of its dependencies (patches/*.patch, applied by pnpm at install).
 * The bench's "bare Aedes" must stay upstream Aedes 1.2, or the ratios would measure the patch
 * against itself. So the bare-Aedes targets load a copy of the installed package tree with every
 * patch reversed (`patch -R`): the patched packages are copied, their other dependencies are
 * linked to the installed ones. The copy is cached under the OS temp dir, keyed by the patches'
 * contents, and checked (every patch must reverse cleanly, or the bench stops and says so).
 *
 *   const { url, patches } = await pristineEntry('aedes');   // import(url) → upstream Aedes
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, readdir, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '..', '..');
const PATCHES = path.join(ROOT, 'patches');

/** The registered patches: [{ name, version, file }] from patches/<name>@<version>.patch. */
export async function listPatches() {
  let files = [];
  try {
    files = (await readdir(PATCHES)).filter((f) => f.endsWith('.patch')).sort();
  } catch {
    return [];
  }
  return files.map((f) => {
    const spec = f.slice(0, -'.patch'.length).replace(/^@([^+]+)\+/, '@$1/');
    const at = spec.lastIndexOf('@');
    return { name: spec.slice(0, at), version: spec.slice(at + 1), file: path.join(PATCHES, f) };
  });
}

/** Installed (real) directory of a dependency of the bench package. */
async function installedDir(name, from = path.join(here, '..')) {
  let dir = from;
  for (;;) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(candidate)) return realpath(candidate);
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find ${name} from ${from}`);
    dir = up;
  }
}

/** Entries of a pnpm `node_modules` folder beside a package, scoped names expanded. */
async function siblings(dir) {
  const out = [];
  for (const e of await readdir(dir)) {
    if (e.startsWith('.')) continue;
    if (e.startsWith('@')) for (const s of await readdir(path.join(dir, e))) out.push(`${e}/${s}`);
    else out.push(e);
  }
  return out;
}

/** `patch -R`, or `git apply -R` where patch(1) is not installed; throws when it does not apply cleanly. */
function reversePatch(file, dir, pkg) {
  let r = spawnSync('patch', ['-R', '-p1', '-s', '-f', '--no-backup-if-mismatch', '-d', dir, '-i', file], { encoding: 'utf8' });
  if (r.error?.code === 'ENOENT') r = spawnSync('git', ['apply', '-R', '-p1', file], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot reverse ${path.basename(file)} on the installed ${pkg}: ${`${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || r.error?.message}`);
}

/**
 * File URL of the installed (patched) package's entry point, as the workspace runs it; `via` names
 * the package it is a dependency of (mqtt-packet via aedes) when the bench does not depend on it.
 */
export async function installedEntry(name, via) {
  const dir = await installedDir(name, via ? await installedDir(via) : undefined);
  const pkgJson = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8'));
  return pathToFileURL(path.join(dir, entryOf(pkgJson))).href;
}

function entryOf(pkgJson) {
  const exp = pkgJson.exports;
  const dot = typeof exp === 'string' ? exp : exp?.['.'];
  const target = typeof dot === 'string' ? dot : dot?.import ?? dot?.default ?? dot?.node;
  return target ?? pkgJson.main ?? 'index.js';
}

/**
 * Builds (or reuses) the unpatched copy of `name` and of every patched package below it, and
 * returns the file URL of its entry point plus the patches that were reversed.
 */
export async function pristineEntry(name) {
  const patches = await listPatches();
  const realDir = await installedDir(name);
  const pkgJson = JSON.parse(await readFile(path.join(realDir, 'package.json'), 'utf8'));
  if (patches.length === 0) return { url: pathToFileURL(path.join(realDir, entryOf(pkgJson))).href, patches: [], version: pkgJson.version };

  const key = createHash('sha256');
  for (const p of patches) key.update(p.file).update(await readFile(p.file));
  key.update(realDir);
  const cacheRoot = path.join(os.tmpdir(), `bastion-bench-pristine-${key.digest('hex').slice(0, 16)}`);
  const done = path.join(cacheRoot, '.complete');
  const entry = path.join(cacheRoot, name, 'node_modules', name, entryOf(pkgJson));
  if (existsSync(done)) return { url: pathToFileURL(entry).href, patches: patches.map((p) => path.basename(p.file)), version: pkgJson.version };

  const tmp = `${cacheRoot}.${process.pid}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  const built = new Map();
  /** Copy a patched package into tmp/<name>/node_modules/<name>, reverse its patch, link its deps. */
  const build = async (pkg, dir) => {
    if (built.has(pkg)) return built.get(pkg);
    const target = path.join(tmp, pkg, 'node_modules', pkg);
    built.set(pkg, target);
    await mkdir(path.dirname(target), { recursive: true });
    await cp(dir, target, { recursive: true, dereference: false });
    const version = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')).version;
    const patch = patches.find((p) => p.name === pkg && p.version === version);
    if (patch) reversePatch(patch.file, target, pkg);
    const depsDir = path.dirname(dir); // pnpm: the package's dependencies are its siblings
    for (const dep of await siblings(depsDir)) {
      if (dep === pkg) continue;
      const depReal = await realpath(path.join(depsDir, dep));
      const link = path.join(path.dirname(target), dep);
      await mkdir(path.dirname(link), { recursive: true });
      const isPatched = patches.some((p) => p.name === dep);
      // relative inside the copy, so the links survive the rename of tmp into place
      await symlink(isPatched ? path.relative(path.dirname(link), await build(dep, depReal)) : depReal, link, 'dir');
    }
    return target;
  };
  await build(name, realDir);
  await writeFile(path.join(tmp, '.complete'), `${new Date().toISOString()}\n`);
  await rm(cacheRoot, { recursive: true, force: true });
  await rename(tmp, cacheRoot);
  return { url: pathToFileURL(entry).href, patches: patches.map((p) => path.basename(p.file)), version: pkgJson.version };
}
