import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ProfileError,
  checkProfile,
  defaultProfile,
  formatDuration,
  formatSize,
  isProfileError,
  loadProfile,
  parseDuration,
  parseProfile,
  parseSize,
  profileJsonSchema,
  profileJsonSchemaText,
  profileReference,
  profileSchema,
  resolveProfile,
  tierFor,
} from '@bastion/profile';
import type { Profile, ProfileInput, ProfileIssue } from '@bastion/profile';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const REGENERATE = `npx tsc -b packages/profile && node --input-type=module -e "const m = await import('./packages/profile/dist/index.js'); m.writeProfileJsonSchema('packages/profile/profile.schema.json'); m.writeProfileReference('docs/profile.md')"`;

let dir: string;
let counter = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bastion-profile-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `text` to a fresh file in the temp dir (optionally in a subdirectory) and returns its path. */
async function writeProfile(text: string, name = 'bastion.yaml', sub = `p${++counter}`): Promise<string> {
  await mkdir(join(dir, sub), { recursive: true });
  const file = join(dir, sub, name);
  await writeFile(file, text);
  return file;
}

/** The ProfileError thrown by `fn` (fails the test when nothing or something else is thrown). */
async function profileError(fn: () => unknown): Promise<ProfileError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProfileError);
    return err as ProfileError;
  }
  throw new Error('expected a ProfileError, nothing was thrown');
}

const TLS = 'tls:\n  cert: server.pem\n  key: server-key.pem\n';

describe('loading errors: file, line, column, path, exact message', () => {
  it('reports a typo in a key with a suggestion, at the key', async () => {
    const file = await writeProfile(`version: 1\n${TLS}listeners:\n  - prot: mqtts\n    port: 8883\n`);
    const err = await profileError(() => loadProfile(file));
    const lines = err.message.split('\n');
    expect(lines).toContain(`${file}:6:5 listeners[0].prot: unknown key "prot" (did you mean "protocol"?)`);
    expect(lines).toContain(`${file}:6:5 listeners[0].protocol: missing required key "protocol"`);
    expect(err.code).toBe('BASTION_ERR_PROFILE');
    expect(err.issues[0]).toEqual<ProfileIssue>({
      file,
      line: 6,
      column: 5,
      path: 'listeners[0].prot',
      message: 'unknown key "prot" (did you mean "protocol"?)',
    });
  });

  it('reports an unknown key without a suggestion when nothing is close', async () => {
    const file = await writeProfile(`version: 1\n${TLS}xyz: 1\nlistener: []\n`);
    const err = await profileError(() => loadProfile(file));
    expect(err.message).toBe(
      [`${file}:5:1 xyz: unknown key "xyz"`, `${file}:6:1 listener: unknown key "listener" (did you mean "listeners"?)`].join('\n'),
    );
  });

  it('reports a wrong type at the value', async () => {
    const file = await writeProfile(`version: 1\n${TLS}listeners:\n  - protocol: mqtts\n    port: "8883"\n`);
    const err = await profileError(() => loadProfile(file));
    expect(err.message).toBe(`${file}:7:11 listeners[0].port: expected number, got string`);
  });

  it('reports every problem, in source order', async () => {
    const file = await writeProfile(
      [
        'version: 1',
        'tier: 5',
        'tls:',
        '  cert: server.pem',
        '  key: server-key.pem',
        'listeners:',
        '  - protocol: mqttx',
        '    port: 1884',
        '  - protocol: mqtt',
        'limits:',
        '  maxPacketSize: lots',
        '  connectTimeout: soon',
        'logging: { level: verbose }',
        '',
      ].join('\n'),
    );
    const err = await profileError(() => loadProfile(file));
    expect(err.message).toBe(
      [
        `${file}:2:7 tier: expected one of 1, 2, 3, 4, got 5`,
        `${file}:7:15 listeners[0].protocol: expected one of mqtt, mqtts, ws, wss, got "mqttx"`,
        `${file}:9:5 listeners[1].port: missing required key "port"`,
        `${file}:11:18 limits.maxPacketSize: expected a size like 256KiB, got "lots"`,
        `${file}:12:19 limits.connectTimeout: expected a duration like 10s, got "soon"`,
        `${file}:13:19 logging.level: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"`,
      ].join('\n'),
    );
    expect(err.issues).toHaveLength(6);
  });

  it('reports checks across keys: TLS listener without tls, client certificates without a CA, duplicates', async () => {
    const file = await writeProfile(
      [
        'version: 1',
        'listeners:',
        '  - protocol: mqtts',
        '    port: 8883',
        '  - protocol: wss',
        '    port: 8884',
        '    tls: { cert: a.pem, key: a-key.pem, clientCertificate: required }',
        '  - protocol: mqtt',
        '    port: 1883',
        '    path: /mqtt',
        '  - protocol: ws',
        '    port: 1883',
        '',
      ].join('\n'),
    );
    const err = await profileError(() => loadProfile(file));
    expect(err.message).toBe(
      [
        `${file}:3:5 listeners[0]: listener "mqtts:8883" uses mqtts but has no tls settings: set listeners[0].tls or the top-level tls`,
        `${file}:7:10 listeners[1].tls: listener "wss:8884" asks for client certificates (clientCertificate: required) but has no tls.ca to verify them`,
        `${file}:10:5 listeners[2].path: "path" only applies to ws and wss listeners, not mqtt`,
        `${file}:12:11 listeners[3].port: 127.0.0.1:1883 is already used by listeners[2]`,
      ].join('\n'),
    );
  });

  it('reports YAML syntax errors with line and column', async () => {
    const file = await writeProfile('version: 1\nlisteners: [\n  { protocol: mqtt, port: 1883 }\nlimits: {}\n');
    const err = await profileError(() => loadProfile(file));
    expect(err.issues.length).toBeGreaterThan(0);
    for (const issue of err.issues) {
      expect(issue.file).toBe(file);
      expect(issue.line).toBeGreaterThan(0);
      expect(issue.column).toBeGreaterThan(0);
      expect(issue.message).toMatch(/^invalid YAML: /);
    }
  });

  it('reports duplicate keys and empty files', async () => {
    const dup = await writeProfile('version: 1\nversion: 1\n');
    expect((await profileError(() => loadProfile(dup))).message).toBe(`${dup}:2:1 (root): invalid YAML: Map keys must be unique`);
    const empty = await writeProfile('# nothing\n');
    expect((await profileError(() => loadProfile(empty))).message).toBe(
      `${empty}:1:1 (root): empty profile: expected an object with at least "version: 1"`,
    );
  });

  it('reports a missing file as one issue at line 0', async () => {
    const file = join(dir, 'does-not-exist.yaml');
    const err = await profileError(() => loadProfile(file));
    expect(err.issues).toEqual([{ file, line: 0, column: 0, path: '(root)', message: 'file not found' }]);
    expect(err.message).toBe(`${file}:0:0 (root): file not found`);
  });

  it('checkProfile returns the issues instead of throwing', async () => {
    const bad = await writeProfile('version: 2\n');
    const result = await checkProfile(bad);
    expect(result).toEqual({ ok: false, errors: [{ file: bad, line: 1, column: 10, path: 'version', message: 'expected 1, got 2' }] });
    const good = await writeProfile(`version: 1\n${TLS}`);
    const ok = await checkProfile(good);
    expect(ok.ok).toBe(true);
    expect(isProfileError(await profileError(() => loadProfile(bad)))).toBe(true);
  });

  it('objects given in code report line and column 0 and <inline> (or the given source)', async () => {
    const err = await profileError(() => resolveProfile({ version: 1, listeners: [{ protocol: 'mqtt', port: 70000, prot: 1 }] }));
    expect(err.message).toBe(
      [
        '<inline>:0:0 listeners[0].prot: unknown key "prot" (did you mean "protocol"?)',
        '<inline>:0:0 listeners[0].port: expected an integer from 0 to 65535, got 70000',
      ].join('\n'),
    );
    const named = await profileError(() => resolveProfile({}, { source: 'embedded.ts' }));
    expect(named.message).toBe('embedded.ts:0:0 version: missing required key "version"');
  });
});

describe('resolving', () => {
  it('substitutes ${env:NAME} in strings and reports unset variables', async () => {
    const text = [
      'version: 1',
      'name: ${env:SITE}-broker',
      'tls:',
      '  cert: ${env:TLS_DIR}/server.pem',
      '  key: ${env:TLS_DIR}/server-key.pem',
      'limits:',
      '  maxPacketSize: ${env:MAX_PACKET}',
      '',
    ].join('\n');
    const file = await writeProfile(text);
    const profile = await loadProfile(file, { env: { SITE: 'plant', TLS_DIR: '/etc/bastion', MAX_PACKET: '1MiB' } });
    expect(profile.name).toBe('plant-broker');
    expect(profile.tls?.cert).toBe('/etc/bastion/server.pem');
    expect(profile.limits.maxPacketSize).toBe(1024 * 1024);

    const err = await profileError(() => loadProfile(file, { env: { SITE: 'plant', MAX_PACKET: '1MiB' } }));
    expect(err.message).toBe(
      [
        `${file}:4:9 tls.cert: environment variable "TLS_DIR" is not set`,
        `${file}:5:8 tls.key: environment variable "TLS_DIR" is not set`,
      ].join('\n'),
    );
  });

  it('reads process.env by default', () => {
    const name = `BASTION_PROFILE_TEST_${process.pid}`;
    process.env[name] = 'from-env';
    try {
      const profile = resolveProfile({ version: 1, name: `\${env:${name}}`, tls: { cert: 'c.pem', key: 'k.pem' } });
      expect(profile.name).toBe('from-env');
    } finally {
      delete process.env[name];
    }
    const err = () => resolveProfile({ version: 1, name: `\${env:${name}}`, tls: { cert: 'c.pem', key: 'k.pem' } });
    expect(err).toThrow(`<inline>:0:0 name: environment variable "${name}" is not set`);
  });

  it('resolves relative paths against the profile file directory', async () => {
    const file = await writeProfile(
      [
        'version: 1',
        'tls:',
        '  cert: certs/server.pem',
        '  key: /abs/server-key.pem',
        '  ca: [ca.pem, ../shared/ca2.pem]',
        '  crl: revoked.pem',
        'authentication:',
        '  passwords: { file: users.txt }',
        'dataDir: data',
        '',
      ].join('\n'),
      'bastion.yaml',
      'nested/conf',
    );
    const base = join(dir, 'nested/conf');
    const profile = await loadProfile(file);
    expect(profile.baseDir).toBe(base);
    expect(profile.tls).toEqual({
      cert: join(base, 'certs/server.pem'),
      key: '/abs/server-key.pem',
      ca: [join(base, 'ca.pem'), join(dir, 'nested/shared/ca2.pem')],
      crl: [join(base, 'revoked.pem')],
    });
    expect(profile.authentication.passwords?.file).toBe(join(base, 'users.txt'));
    expect(profile.dataDir).toBe(join(base, 'data'));

    const inline = resolveProfile({ version: 1, tls: { cert: 'c.pem', key: 'k.pem' } }, { baseDir: '/srv/bastion' });
    expect(inline.tls?.cert).toBe('/srv/bastion/c.pem');
  });

  it('parses sizes and durations', async () => {
    expect(parseSize(1024)).toBe(1024);
    expect(parseSize('256KiB')).toBe(262144);
    expect(parseSize('1MiB')).toBe(1048576);
    expect(parseSize('64KB')).toBe(64000);
    expect(parseSize('1.5 mib')).toBe(1572864);
    expect(parseSize('100B')).toBe(100);
    expect(() => parseSize('lots')).toThrow('expected a size like 256KiB, got "lots"');
    expect(() => parseSize('12K')).toThrow(TypeError);
    expect(parseDuration(250)).toBe(250);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('10s')).toBe(10_000);
    expect(parseDuration('15m')).toBe(900_000);
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(() => parseDuration('soon')).toThrow('expected a duration like 10s, got "soon"');
    expect(() => parseDuration('10 minutes')).toThrow(TypeError);
    expect(formatSize(262144)).toBe('256KiB');
    expect(formatDuration(10_000)).toBe('10s');

    const file = await writeProfile(`version: 1\n${TLS}limits:\n  maxPacketSize: 1MiB\n  connectTimeout: 1500ms\n`);
    expect((await loadProfile(file)).limits).toEqual({ maxPacketSize: 1048576, connectTimeout: 1500 });
    const defaults = resolveProfile({ version: 1, tls: { cert: 'c', key: 'k' } });
    expect(defaults.limits).toEqual({ maxPacketSize: 262144, connectTimeout: 10_000 });

    const tooBig = await writeProfile(`version: 1\n${TLS}limits:\n  maxPacketSize: 1GiB\n`);
    expect((await profileError(() => loadProfile(tooBig))).message).toBe(
      `${tooBig}:6:18 limits.maxPacketSize: expected a size from 64B to 256MiB, got "1GiB"`,
    );
  });

  it('merges the top-level tls into each TLS listener and keeps it', async () => {
    const file = await writeProfile(
      [
        'version: 1',
        'tls:',
        '  cert: server.pem',
        '  key: server-key.pem',
        '  ca: ca.pem',
        '  minVersion: TLSv1.3',
        '  handshakeTimeout: 5s',
        'listeners:',
        '  - protocol: mqtts',
        '    port: 8883',
        '    tls: { clientCertificate: required, cert: devices.pem }',
        '  - name: dash',
        '    protocol: wss',
        '    host: 0.0.0.0',
        '    port: 0',
        '  - protocol: ws',
        '    port: 8080',
        '    path: /ws',
        '  - protocol: mqtt',
        '    port: 1883',
        '',
      ].join('\n'),
    );
    const base = dirname(file);
    const profile = await loadProfile(file);
    expect(profile.tls).toEqual({
      cert: join(base, 'server.pem'),
      key: join(base, 'server-key.pem'),
      ca: [join(base, 'ca.pem')],
      minVersion: 'TLSv1.3',
      handshakeTimeout: 5000,
    });
    expect(profile.listeners).toEqual([
      {
        name: 'mqtts:8883',
        protocol: 'mqtts',
        host: '127.0.0.1',
        port: 8883,
        tls: {
          cert: join(base, 'devices.pem'),
          key: join(base, 'server-key.pem'),
          ca: [join(base, 'ca.pem')],
          crl: [],
          minVersion: 'TLSv1.3',
          clientCertificate: 'required',
          handshakeTimeout: 5000,
        },
      },
      {
        name: 'dash',
        protocol: 'wss',
        host: '0.0.0.0',
        port: 0,
        path: '/mqtt',
        tls: {
          cert: join(base, 'server.pem'),
          key: join(base, 'server-key.pem'),
          ca: [join(base, 'ca.pem')],
          crl: [],
          minVersion: 'TLSv1.3',
          clientCertificate: 'none',
          handshakeTimeout: 5000,
        },
      },
      { name: 'ws:8080', protocol: 'ws', host: '127.0.0.1', port: 8080, path: '/ws' },
      { name: 'mqtt:1883', protocol: 'mqtt', host: '127.0.0.1', port: 1883 },
    ]);
  });

  it('applies defaults: one mqtts listener on 127.0.0.1:8883, no anonymous clients', () => {
    const profile = resolveProfile({ version: 1, tls: { cert: 'c.pem', key: 'k.pem' } }, { baseDir: '/b' });
    expect(profile).toMatchObject({
      version: 1,
      tier: 1,
      tiers: {},
      listeners: [
        {
          name: 'mqtts:8883',
          protocol: 'mqtts',
          host: '127.0.0.1',
          port: 8883,
          tls: { cert: '/b/c.pem', key: '/b/k.pem', ca: [], crl: [], minVersion: 'TLSv1.2', clientCertificate: 'none', handshakeTimeout: 10_000 },
        },
      ],
      tls: { cert: '/b/c.pem', key: '/b/k.pem' },
      authentication: { anonymous: false, require: [] },
      limits: { maxPacketSize: 262144, connectTimeout: 10_000 },
      sys: { subscribers: [] },
      logging: { level: 'info' },
      source: '<inline>',
      baseDir: '/b',
    });
    expect(() => resolveProfile({ version: 1 })).toThrow(
      '<inline>:0:0 listeners: the default listener "mqtts:8883" (used when listeners is omitted) needs tls settings: set the top-level tls, or declare listeners',
    );
  });

  it('reads JSON profiles, with line numbers in errors', async () => {
    const good = await writeProfile(
      JSON.stringify({ version: 1, tier: 3, tiers: { 'PR.AC': 4 }, listeners: [{ protocol: 'mqtt', port: 1883 }], sys: { subscribers: ['ops'] }, audit: { file: 'audit.log' } }, null, 2),
      'bastion.json',
    );
    const profile = await loadProfile(good);
    expect(profile.listeners).toEqual([{ name: 'mqtt:1883', protocol: 'mqtt', host: '127.0.0.1', port: 1883 }]);
    expect(profile.tier).toBe(3);
    expect(tierFor(profile, 'PR.AC-3')).toBe(4);
    expect(tierFor(profile, 'DE.CM')).toBe(3);
    expect(profile.sys.subscribers).toEqual(['ops']);

    const bad = await writeProfile('{\n  "version": 1,\n  "listeners": [\n    { "protocol": "mqtt", "port": "1883", "hots": "::" }\n  ]\n}\n', 'bad.json');
    expect((await profileError(() => loadProfile(bad))).message).toBe(
      [
        `${bad}:4:35 listeners[0].port: expected number, got string`,
        `${bad}:4:43 listeners[0].hots: unknown key "hots" (did you mean "host"?)`,
      ].join('\n'),
    );
    expect(parseProfile('{"version": 1, "listeners": [{"protocol": "ws", "port": 80}]}', { file: 'x.json', baseDir: '/' }).listeners[0]).toEqual({
      name: 'ws:80',
      protocol: 'ws',
      host: '127.0.0.1',
      port: 80,
      path: '/mqtt',
    });
  });

  it('checks authentication factors', () => {
    const tls = { cert: 'c.pem', key: 'k.pem', ca: 'ca.pem', clientCertificate: 'optional' } as const;
    const twoFactor = resolveProfile({
      version: 1,
      tls,
      authentication: { passwords: { file: 'users.txt' }, certificates: {}, require: ['certificate', 'password', 'password'] },
    });
    expect(twoFactor.authentication.require).toEqual(['certificate', 'password']);
    expect(twoFactor.authentication.certificates).toEqual({ identity: 'cn', clientIdMustMatch: false });
    expect(() => resolveProfile({ version: 1, tls, authentication: { anonymous: true, require: ['password'] } })).toThrow(
      [
        '<inline>:0:0 authentication.require: "password" is required but authentication.passwords is not set',
        '<inline>:0:0 authentication.anonymous: anonymous clients cannot be allowed while authentication.require is set',
      ].join('\n'),
    );
  });

  it('resolves the embedded development default against a baseDir', () => {
    const input: ProfileInput = defaultProfile();
    const profile = resolveProfile(input, { baseDir: '/repo' });
    expect(profile.listeners).toEqual([
      {
        name: 'mqtts:8883',
        protocol: 'mqtts',
        host: '127.0.0.1',
        port: 8883,
        tls: {
          cert: '/repo/certs-dev/server.pem',
          key: '/repo/certs-dev/server-key.pem',
          ca: ['/repo/certs-dev/ca.pem'],
          crl: [],
          minVersion: 'TLSv1.2',
          clientCertificate: 'optional',
          handshakeTimeout: 10_000,
        },
      },
    ]);
    expect(profile.authentication).toEqual({ anonymous: false, passwords: { file: '/repo/certs-dev/users.txt' }, require: [] });
    expect(profile.tier).toBe(1);
  });
});

// A small JSON Schema checker for the keywords profile.schema.json uses; enough to show the
// schema accepts what the loader accepts (and rejects an unknown key like the loader does).
type Schema = Record<string, unknown>;
function schemaErrors(schema: Schema, value: unknown, at = '$'): string[] {
  const errors: string[] = [];
  const typeOk = (t: string): boolean =>
    t === 'integer' ? Number.isInteger(value) :
    t === 'number' ? typeof value === 'number' :
    t === 'array' ? Array.isArray(value) :
    t === 'object' ? value !== null && typeof value === 'object' && !Array.isArray(value) :
    t === 'null' ? value === null :
    typeof value === t;
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some(typeOk)) return [`${at}: expected ${types.join('|')}`];
  }
  if ('const' in schema && schema.const !== value) errors.push(`${at}: expected const ${String(schema.const)}`);
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) errors.push(`${at}: not in enum`);
  if (Array.isArray(schema.anyOf) && !(schema.anyOf as Schema[]).some((s) => schemaErrors(s, value, at).length === 0)) {
    errors.push(`${at}: matches no anyOf branch`);
  }
  if (typeof value === 'string') {
    if (typeof schema.minLength === 'number' && value.length < schema.minLength) errors.push(`${at}: too short`);
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${at}: pattern`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) errors.push(`${at}: below minimum`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) errors.push(`${at}: above maximum`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) errors.push(`${at}: too few items`);
    if (schema.items !== undefined) value.forEach((v, i) => errors.push(...schemaErrors(schema.items as Schema, v, `${at}[${i}]`)));
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const key of (schema.required ?? []) as string[]) if (!(key in obj)) errors.push(`${at}.${key}: required`);
    for (const [key, v] of Object.entries(obj)) {
      if (schema.propertyNames !== undefined) errors.push(...schemaErrors(schema.propertyNames as Schema, key, `${at}{${key}}`));
      if (key in props) errors.push(...schemaErrors(props[key] as Schema, v, `${at}.${key}`));
      else if (schema.additionalProperties === false) errors.push(`${at}.${key}: additional property`);
      else if (typeof schema.additionalProperties === 'object') errors.push(...schemaErrors(schema.additionalProperties as Schema, v, `${at}.${key}`));
    }
  }
  return errors;
}

/** The `## Example` YAML profile of docs/profile.md. */
function docsExample(docs: string): string {
  const section = docs.slice(docs.indexOf('## Example'));
  const match = /```yaml\n([\s\S]*?)```/.exec(section);
  if (!match?.[1]) throw new Error('docs/profile.md has no yaml example under "## Example"');
  return match[1];
}

describe('JSON Schema', () => {
  it('is draft 2020-12 JSON with an $id, descriptions and every top-level key', () => {
    const schema = JSON.parse(profileJsonSchemaText()) as Schema;
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.$id).toBe('https://bastion.dev/schema/profile.json');
    const properties = schema.properties as Record<string, Schema>;
    for (const key of ['version', 'name', 'tier', 'tiers', 'listeners', 'tls', 'authentication', 'limits', 'sys', 'logging', 'dataDir']) {
      expect(properties, key).toHaveProperty(key);
    }
    expect(Object.keys(properties).sort()).toEqual(Object.keys(profileSchema.shape).sort());
    for (const [key, property] of Object.entries(properties)) {
      expect(typeof property.description, `${key} has a description`).toBe('string');
    }
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(['version']);
  });

  it('accepts what the loader accepts and rejects unknown keys', async () => {
    const schema = profileJsonSchema();
    const docs = await readFile(join(repoRoot, 'docs/profile.md'), 'utf8');
    // The YAML parser the profile package itself uses, to get the example as a plain object.
    const { parse } = createRequire(join(repoRoot, 'packages/profile/package.json'))('yaml') as { parse: (text: string) => unknown };
    const accepted: unknown[] = [
      defaultProfile(),
      parse(docsExample(docs)),
      { version: 1, tls: { cert: 'c', key: 'k', ca: ['a', 'b'] }, limits: { maxPacketSize: 1024, connectTimeout: '1h30m' }, tiers: { 'PR.AC': 2 } },
    ];
    for (const input of accepted) {
      expect(() => resolveProfile(input)).not.toThrow();
      expect(schemaErrors(schema, input)).toEqual([]);
    }
    expect(schemaErrors(schema, { version: 1, listeners: [{ protocol: 'mqtt', port: 1, prot: 'x' }] })).toEqual([
      '$.listeners[0].prot: additional property',
    ]);
    expect(schemaErrors(schema, { version: 1, limits: { maxPacketSize: 'lots' } })).not.toEqual([]);
  });

  it('committed packages/profile/profile.schema.json matches the schema', async () => {
    const committed = await readFile(join(repoRoot, 'packages/profile/profile.schema.json'), 'utf8').catch(() => '');
    expect(committed, `packages/profile/profile.schema.json is out of date. Regenerate it from the repository root:\n  ${REGENERATE}`).toBe(
      profileJsonSchemaText(),
    );
  });
});

describe('docs/profile.md', () => {
  it('contains the generated key reference', async () => {
    const docs = await readFile(join(repoRoot, 'docs/profile.md'), 'utf8');
    expect(docs.includes(profileReference()), `docs/profile.md reference is out of date. Regenerate it from the repository root:\n  ${REGENERATE}`).toBe(true);
  });

  it('has a complete example that loads', async () => {
    const docs = await readFile(join(repoRoot, 'docs/profile.md'), 'utf8');
    const profile = parseProfile(docsExample(docs), { file: join(repoRoot, 'bastion.yaml') });
    expect(profile.listeners.map((l) => l.name)).toEqual(['devices', 'dashboards', 'local']);
    expect(profile.limits.maxPacketSize).toBe(1048576);
    expect(profile.dataDir).toBe(join(repoRoot, '.bastion'));
  });
});
