/**
 * The key reference of docs/profile.md, generated from the JSON Schema (and so from the zod
 * descriptions): one table per object, every key with its type, default and description.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { profileJsonSchema } from './json-schema.js';

interface Node {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  const?: unknown;
  enum?: unknown[];
  anyOf?: Node[];
  items?: Node;
  properties?: Record<string, Node>;
  required?: string[];
  additionalProperties?: boolean | Node;
  propertyNames?: Node;
  minimum?: number;
  maximum?: number;
}

export const REFERENCE_BEGIN = '<!-- BEGIN GENERATED REFERENCE: profileReference() in @bastion/profile. Do not edit by hand. -->';
export const REFERENCE_END = '<!-- END GENERATED REFERENCE -->';

function typeName(node: Node): string {
  if (node.title !== undefined) return node.title.toLowerCase();
  if (node.const !== undefined) return JSON.stringify(node.const);
  if (node.enum !== undefined) return node.enum.map(String).join(' | ');
  if (node.anyOf !== undefined) return node.anyOf.map(typeName).join(' | ');
  if (node.type === 'array' && node.items !== undefined) {
    const item = typeName(node.items);
    return item.includes(' ') ? `(${item})[]` : `${item}[]`;
  }
  if (node.type === 'object' && node.properties === undefined && typeof node.additionalProperties === 'object') {
    return `map of string → ${typeName(node.additionalProperties)}`;
  }
  if (node.type === 'integer' && node.minimum !== undefined && node.maximum !== undefined) {
    return `integer ${node.minimum}..${node.maximum}`;
  }
  return Array.isArray(node.type) ? node.type.join(' | ') : (node.type ?? 'any');
}

function defaultText(node: Node, required: boolean): string {
  if (required) return 'required';
  const d = node.default;
  if (d === undefined) return '—';
  if (typeof d === 'object' && d !== null && !Array.isArray(d) && Object.keys(d).length === 0) return '(see keys)';
  return code(typeof d === 'string' ? d : JSON.stringify(d));
}

function code(text: string): string {
  return `\`${text}\``;
}

/** Table cells: a `|` must be escaped even inside code spans; newlines are not allowed. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

/** An object node, or the object its array items are. */
function objectOf(node: Node): Node | undefined {
  if (node.properties !== undefined) return node;
  if (node.type === 'array' && node.items?.properties !== undefined) return node.items;
  return undefined;
}

/** The reference section of docs/profile.md (markdown, without the BEGIN/END markers). */
export function profileReference(): string {
  const root = profileJsonSchema() as Node;
  const out: string[] = [];
  const documented = new Map<string, string>();
  // Breadth-first, so the top-level `tls` is documented before `listeners[].tls` refers to it.
  const queue: { name: string; node: Node }[] = [{ name: '', node: root }];
  while (queue.length > 0) {
    const { name, node } = queue.shift() as { name: string; node: Node };
    const shape = JSON.stringify(node.properties);
    const heading = name === '' ? 'Top level' : code(name);
    out.push(`### ${heading}`, '');
    if (name !== '' && node.description !== undefined) out.push(node.description, '');
    const same = documented.get(shape);
    if (same !== undefined) {
      out.push(`Same keys as ${code(same)} above.`, '');
      continue;
    }
    if (name !== '') documented.set(shape, name);
    out.push('| Key | Type | Default | Description |', '| --- | --- | --- | --- |');
    const required = new Set(node.required ?? []);
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const path = name === '' ? key : `${name}.${key}`;
      const inner = objectOf(child);
      const shown = inner !== undefined && child.type === 'array' ? `${path}[]` : path;
      const type = inner === undefined ? typeName(child) : child.type === 'array' ? 'object[]' : 'object';
      out.push(`| ${cell(code(path))} | ${cell(code(type))} | ${cell(defaultText(child, required.has(key)))} | ${cell(child.description ?? '')} |`);
      if (inner !== undefined) {
        queue.push({ name: shown, node: { ...inner, description: child.description ?? inner.description } });
      }
    }
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

/** Replaces the generated reference between the BEGIN/END markers of `file` (docs/profile.md). */
export function writeProfileReference(file: string): void {
  const text = readFileSync(file, 'utf8');
  const begin = text.indexOf(REFERENCE_BEGIN);
  const end = text.indexOf(REFERENCE_END);
  if (begin < 0 || end < begin) throw new Error(`${file} has no ${REFERENCE_BEGIN} ... ${REFERENCE_END} section`);
  const updated = `${text.slice(0, begin + REFERENCE_BEGIN.length)}\n\n${profileReference()}\n${text.slice(end)}`;
  writeFileSync(file, updated);
}
