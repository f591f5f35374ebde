import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

describe('examples/embedded', () => {
  it('runs: a broker from a profile object, a custom middleware, security events, a clean close', () => {
    const app = fileURLToPath(new URL('../examples/embedded/app.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [app], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/broker listening on 127\.0\.0\.1:\d+/);
    expect(r.stdout).toContain('received telemetry/temp: 21.5');
    expect(r.stdout).toContain('security: publish.denied config/setpoint by app-client (PR.AC-5, not-authorized)');
    expect(r.stdout).not.toContain('received config/setpoint');
    expect(r.stdout).toMatch(/connected clients: app-client@127\.0\.0\.1 via mqtt:\d+/);
    expect(r.stdout.trim().endsWith('closed')).toBe(true);
  });
});
