import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadCatalog, subcategories, CATALOG_FILE } from '@bastion/profile';
import { coreGuards } from '../packages/core/src/guards.js';
import { passwordAuth, certificateAuth } from '@bastion/middleware';

describe('the CSF catalog', () => {
  it('ships the five functions of the note with every subcategory id unique', () => {
    const c = loadCatalog();
    expect(c.functions.map((f) => f.id)).toEqual(['ID', 'PR', 'DE', 'RS', 'RC']);
    const ids = subcategories().map((s) => s.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toContain('PR.SS-5');
  });

  it('is the same as the project reference copy in ../shared when that is present', () => {
    const shared = fileURLToPath(new URL('../../shared/csf-mqtt-core.yaml', import.meta.url));
    if (!existsSync(shared)) return; // a user's checkout has only the shipped copy
    expect(readFileSync(CATALOG_FILE, 'utf8')).toBe(readFileSync(shared, 'utf8'));
  });

  it('every control id a middleware declares exists in the catalog', () => {
    const ids = new Set(subcategories().map((s) => s.id));
    for (const mw of [...coreGuards({ sysSubscribers: [] }), passwordAuth({ users: [] }), certificateAuth()]) {
      for (const id of mw.controls) expect(ids.has(id), `${mw.name}: ${id}`).toBe(true);
    }
  });
});
