/** The profile's JSON Schema, generated from the zod schema (editors, CI linters, other languages). */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { documentedDefaults, profileSchema } from './schema.js';

export const PROFILE_SCHEMA_ID = 'https://bastion.dev/schema/profile.json';

/** The committed copy of the schema, `packages/profile/profile.schema.json` (same path from src/ and dist/). */
export const PROFILE_SCHEMA_FILE = fileURLToPath(new URL('../profile.schema.json', import.meta.url));

/** JSON Schema (draft 2020-12) of what a profile file may contain, with every key's description. */
export function profileJsonSchema(): Record<string, unknown> {
  const { $schema, ...generated } = z.toJSONSchema(profileSchema, {
    target: 'draft-2020-12',
    io: 'input',
    unrepresentable: 'throw',
    override: ({ zodSchema, jsonSchema }) => {
      const documented = documentedDefaults.get(zodSchema);
      if (documented !== undefined) jsonSchema.default = documented.default;
    },
  }) as Record<string, unknown>;
  return {
    $schema,
    $id: PROFILE_SCHEMA_ID,
    title: 'Bastion framework profile',
    description:
      'Configuration of a Bastion MQTT broker, mapped to the NIST Cybersecurity Framework. Any string may contain ${env:NAME}; relative paths resolve against the profile file\'s directory.',
    ...generated,
  };
}

/** The schema as committed: 2-space JSON with a final newline. */
export function profileJsonSchemaText(): string {
  return `${JSON.stringify(profileJsonSchema(), null, 2)}\n`;
}

/** Writes the schema to `path` (default: the committed `profile.schema.json`). */
export function writeProfileJsonSchema(path: string = PROFILE_SCHEMA_FILE): void {
  writeFileSync(path, profileJsonSchemaText());
}
