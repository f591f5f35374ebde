/**
 * The MQTT cybersecurity Framework Core of the OASIS note: functions → categories →
 * subcategories, each with who can deliver it (scope). Shipped with the package (catalog/).
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

export type Scope = 'broker' | 'broker-aids' | 'client' | 'organization';

export interface Subcategory {
  readonly id: string;
  readonly name: string;
  readonly scope: Scope;
}
export interface Category {
  readonly id: string;
  readonly name: string;
  readonly subcategories: readonly Subcategory[];
}
export interface CsfFunction {
  readonly id: string;
  readonly name: string;
  readonly categories: readonly Category[];
}
export interface Catalog {
  readonly functions: readonly CsfFunction[];
  readonly tiers: ReadonlyArray<{ readonly tier: number; readonly name: string }>;
}

export const CATALOG_FILE = new URL('../catalog/csf-mqtt-core.yaml', import.meta.url);

let cached: Catalog | undefined;

export function loadCatalog(): Catalog {
  cached ??= parse(readFileSync(CATALOG_FILE, 'utf8')) as Catalog;
  return cached;
}

/** Every subcategory with its category and function, in catalog order. */
export function subcategories(catalog: Catalog = loadCatalog()): Array<Subcategory & { category: Category; fn: CsfFunction }> {
  return catalog.functions.flatMap((fn) => fn.categories.flatMap((category) => category.subcategories.map((s) => ({ ...s, category, fn }))));
}

export function isKnownControl(id: string, catalog: Catalog = loadCatalog()): boolean {
  return subcategories(catalog).some((s) => s.id === id);
}
