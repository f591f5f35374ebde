/**
 * The software inventory (ID.AM-2): Bastion, the Node.js runtime and what it bundles (OpenSSL, V8,
 * libuv, zlib …, from `process.versions`), and every package installed for the broker — its
 * dependencies, transitively, read from the package.json files Node would load — exportable as a
 * CycloneDX 1.5 JSON SBOM.
 *
 * Packages are found the way Node resolves them: for a dependent in directory D, the first
 * `node_modules/<name>` in D or one of its parents (directories named node_modules skipped). That
 * works for npm, yarn and pnpm layouts alike, and lists what is really installed, not what a lock
 * file asked for.
 */
import { randomUUID } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface SoftwareComponent {
  /** `pkg:npm/%40bastion/core@0.1.0`, `pkg:generic/openssl@3.0.15`: also the CycloneDX bom-ref. */
  ref: string;
  name: string;
  version: string;
  kind: 'application' | 'runtime' | 'runtime-library' | 'npm';
  license: string | null;
  description: string | null;
  /** Where it is installed (npm packages). */
  path: string | null;
  /** refs of what it depends on (resolved, installed ones). */
  dependsOn: string[];
}

export interface SoftwareInventory {
  generatedAt: string;
  bastion: { name: string; version: string };
  runtime: { node: string; openssl: string | null; platform: string; arch: string; versions: Record<string, string> };
  components: SoftwareComponent[];
  /** Declared dependencies that are not installed (optional ones, usually). */
  missing: Array<{ name: string; requiredBy: string }>;
  /** True when the walk stopped at `maxComponents`. */
  truncated: boolean;
}

export interface SoftwareOptions {
  /** The package to start from (its directory). Default: @bastion/broker's. */
  root?: string;
  /** Most npm packages listed (default 5000). */
  maxComponents?: number;
}

/** The libraries Node bundles that are worth listing (process.versions keys). */
const RUNTIME_LIBRARIES = ['openssl', 'v8', 'uv', 'zlib', 'brotli', 'ares', 'nghttp2', 'ngtcp2', 'nghttp3', 'llhttp', 'uvwasi', 'acorn', 'ada', 'simdutf', 'icu', 'sqlite', 'undici'];

interface PackageJson {
  name?: string;
  version?: string;
  license?: string | { type?: string };
  description?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/** A purl for an npm package: the scope's `@` is percent-encoded. */
export function npmPurl(name: string, version: string): string {
  return `pkg:npm/${name.startsWith('@') ? `%40${name.slice(1)}` : name}@${encodeURIComponent(version)}`;
}

function genericPurl(name: string, version: string): string {
  return `pkg:generic/${name}@${encodeURIComponent(version)}`;
}

async function readJson(file: string): Promise<PackageJson | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as PackageJson;
  } catch {
    return undefined;
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** The directory Node would load `name` from, for a dependent living in `from`. */
async function locate(name: string, from: string): Promise<string | undefined> {
  let dir = from;
  for (;;) {
    if (path.basename(dir) !== 'node_modules') {
      const candidate = path.join(dir, 'node_modules', name);
      if (await isDir(candidate)) return realpath(candidate);
    }
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** The directory of @bastion/broker (this module lives in its src/ or dist/). */
async function brokerPackageDir(): Promise<string> {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = await readJson(path.join(dir, 'package.json'));
    if (pkg?.name === '@bastion/broker') return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the @bastion/broker package directory');
    dir = parent;
  }
}

const licenseOf = (p: PackageJson): string | null =>
  typeof p.license === 'string' ? p.license : typeof p.license === 'object' && typeof p.license?.type === 'string' ? p.license.type : null;

/** Walk the installed dependency tree from the broker package (breadth first, each package once). */
export async function softwareInventory(opts: SoftwareOptions = {}): Promise<SoftwareInventory> {
  const rootDir = await realpath(opts.root ?? (await brokerPackageDir()));
  const max = opts.maxComponents ?? 5000;
  const rootPkg = (await readJson(path.join(rootDir, 'package.json'))) ?? {};
  const bastionVersion = rootPkg.version ?? '0.0.0';
  const byDir = new Map<string, SoftwareComponent>();
  const missing: SoftwareInventory['missing'] = [];
  let truncated = false;

  const rootRef = npmPurl(rootPkg.name ?? 'bastion', bastionVersion);
  const queue: Array<{ dir: string; pkg: PackageJson; component: SoftwareComponent }> = [];
  const rootComponent: SoftwareComponent = {
    ref: rootRef,
    name: rootPkg.name ?? '@bastion/broker',
    version: bastionVersion,
    kind: 'npm',
    license: licenseOf(rootPkg),
    description: rootPkg.description ?? null,
    path: rootDir,
    dependsOn: [],
  };
  byDir.set(rootDir, rootComponent);
  queue.push({ dir: rootDir, pkg: rootPkg, component: rootComponent });
  while (queue.length > 0) {
    const { dir, pkg, component } = queue.shift() as (typeof queue)[number];
    const deps = { ...pkg.optionalDependencies, ...pkg.dependencies };
    for (const name of Object.keys(deps).sort()) {
      const depDir = await locate(name, dir);
      if (depDir === undefined) {
        missing.push({ name, requiredBy: component.name });
        continue;
      }
      let dep = byDir.get(depDir);
      if (dep === undefined) {
        if (byDir.size >= max) {
          truncated = true;
          continue;
        }
        const depPkg = await readJson(path.join(depDir, 'package.json'));
        if (depPkg?.version === undefined) {
          missing.push({ name, requiredBy: component.name });
          continue;
        }
        dep = {
          ref: npmPurl(depPkg.name ?? name, depPkg.version),
          name: depPkg.name ?? name,
          version: depPkg.version,
          kind: 'npm',
          license: licenseOf(depPkg),
          description: depPkg.description ?? null,
          path: depDir,
          dependsOn: [],
        };
        byDir.set(depDir, dep);
        queue.push({ dir: depDir, pkg: depPkg, component: dep });
      }
      if (!component.dependsOn.includes(dep.ref)) component.dependsOn.push(dep.ref);
    }
  }

  // Two installed copies of one name@version are one component for an SBOM.
  const npm = new Map<string, SoftwareComponent>();
  for (const c of byDir.values()) {
    const seen = npm.get(c.ref);
    if (seen === undefined) npm.set(c.ref, c);
    else for (const d of c.dependsOn) if (!seen.dependsOn.includes(d)) seen.dependsOn.push(d);
  }

  const versions: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.versions)) if (typeof v === 'string') versions[k] = v;
  const nodeVersion = process.versions.node;
  const libraries: SoftwareComponent[] = RUNTIME_LIBRARIES.filter((k) => versions[k] !== undefined).map((k) => ({
    ref: genericPurl(k === 'uv' ? 'libuv' : k, versions[k] as string),
    name: k === 'uv' ? 'libuv' : k,
    version: versions[k] as string,
    kind: 'runtime-library',
    license: null,
    description: `bundled with Node.js ${nodeVersion}`,
    path: null,
    dependsOn: [],
  }));
  const node: SoftwareComponent = {
    ref: genericPurl('node', nodeVersion),
    name: 'node',
    version: nodeVersion,
    kind: 'runtime',
    license: 'MIT',
    description: 'Node.js runtime',
    path: process.execPath,
    dependsOn: libraries.map((l) => l.ref),
  };
  const app: SoftwareComponent = {
    ref: `bastion@${bastionVersion}`,
    name: 'bastion',
    version: bastionVersion,
    kind: 'application',
    license: licenseOf(rootPkg),
    description: 'Bastion MQTT broker',
    path: rootDir,
    dependsOn: [rootRef, node.ref],
  };
  const sorted = [...npm.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.version < b.version ? -1 : 1));
  for (const c of sorted) c.dependsOn.sort();
  return {
    generatedAt: new Date().toISOString(),
    bastion: { name: 'bastion', version: bastionVersion },
    runtime: { node: nodeVersion, openssl: versions.openssl ?? null, platform: process.platform, arch: process.arch, versions },
    components: [app, node, ...libraries, ...sorted],
    missing,
    truncated,
  };
}

// --- CycloneDX 1.5 -------------------------------------------------------------------------------

export interface CycloneDxComponent {
  type: 'application' | 'framework' | 'library' | 'platform';
  'bom-ref': string;
  group?: string;
  name: string;
  version: string;
  description?: string;
  purl?: string;
  licenses?: Array<{ license: { id: string } | { name: string } } | { expression: string }>;
}

export interface CycloneDxBom {
  $schema: string;
  bomFormat: 'CycloneDX';
  specVersion: '1.5';
  serialNumber: string;
  version: number;
  metadata: {
    timestamp: string;
    tools: { components: CycloneDxComponent[] };
    component: CycloneDxComponent;
    properties: Array<{ name: string; value: string }>;
  };
  components: CycloneDxComponent[];
  dependencies: Array<{ ref: string; dependsOn: string[] }>;
}

/** SPDX ids common among npm packages; anything else is given as a name (or an expression). */
const SPDX_IDS = new Set([
  '0BSD', 'Apache-2.0', 'Artistic-2.0', 'BlueOak-1.0.0', 'BSD-2-Clause', 'BSD-3-Clause', 'BSL-1.0', 'CC0-1.0', 'CC-BY-3.0', 'CC-BY-4.0',
  'GPL-2.0-only', 'GPL-3.0-only', 'ISC', 'LGPL-2.1-only', 'LGPL-3.0-only', 'MIT', 'MIT-0', 'MPL-2.0', 'Python-2.0', 'Unlicense', 'WTFPL', 'Zlib',
]);

function licenses(license: string | null): CycloneDxComponent['licenses'] {
  if (license === null || license === '') return undefined;
  if (SPDX_IDS.has(license)) return [{ license: { id: license } }];
  if (/\s(OR|AND|WITH)\s/.test(license)) return [{ expression: license.replace(/^\((.*)\)$/, '$1') }];
  return [{ license: { name: license } }];
}

function cdxComponent(c: SoftwareComponent): CycloneDxComponent {
  const out: CycloneDxComponent = {
    type: c.kind === 'application' ? 'application' : c.kind === 'runtime' ? 'platform' : 'library',
    'bom-ref': c.ref,
    name: c.name,
    version: c.version,
  };
  if (c.kind === 'npm' && c.name.startsWith('@')) {
    const slash = c.name.indexOf('/');
    out.group = c.name.slice(0, slash);
    out.name = c.name.slice(slash + 1);
  }
  if (c.description) out.description = c.description;
  if (c.kind !== 'application') out.purl = c.ref;
  const l = licenses(c.license);
  if (l) out.licenses = l;
  return out;
}

/** The inventory as a CycloneDX 1.5 JSON document (a BOM of the running broker). */
export function toCycloneDx(inv: SoftwareInventory, extra: { properties?: Record<string, string> } = {}): CycloneDxBom {
  const [app, ...rest] = inv.components as [SoftwareComponent, ...SoftwareComponent[]];
  const refs = new Set(inv.components.map((c) => c.ref));
  return {
    $schema: 'http://cyclonedx.org/schema/bom-1.5.schema.json',
    bomFormat: 'CycloneDX',
    specVersion: '1.5',
    serialNumber: `urn:uuid:${randomUUID()}`,
    version: 1,
    metadata: {
      timestamp: inv.generatedAt,
      tools: { components: [{ type: 'application', 'bom-ref': 'tool:bastion-identify', name: 'bastion identify', version: inv.bastion.version }] },
      component: cdxComponent(app),
      properties: [
        { name: 'bastion:node', value: inv.runtime.node },
        { name: 'bastion:openssl', value: inv.runtime.openssl ?? 'none' },
        { name: 'bastion:platform', value: `${inv.runtime.platform}-${inv.runtime.arch}` },
        ...Object.entries(extra.properties ?? {}).map(([name, value]) => ({ name: `bastion:${name}`, value })),
      ],
    },
    components: rest.map(cdxComponent),
    dependencies: inv.components.map((c) => ({ ref: c.ref, dependsOn: c.dependsOn.filter((d) => refs.has(d)) })),
  };
}
