/**
 * The data-flow map as text for diagrams: Mermaid (renders on GitHub, GitLab, in many wikis) and
 * Graphviz DOT (`dot -Tsvg`). Both read the JSON map, so the three exports always agree.
 *
 * Data flows left to right: publisher → topic pattern → subscription filter → subscriber. A filter
 * equal to the topic is one node. Refused attempts are dashed edges labelled "denied".
 */
import type { DataFlowMap } from './flows.js';

interface Graph {
  identities: string[];
  patterns: string[];
  /** [from, to, label, refused] with node keys `i:<identity>` / `t:<pattern>` */
  edges: Array<[string, string, string, boolean]>;
}

function graphOf(map: DataFlowMap): Graph {
  const identities = map.identities.map((i) => i.identity);
  const patterns = map.topics.map((t) => t.pattern);
  const edges: Graph['edges'] = [];
  for (const f of map.flows) {
    const id = `i:${f.identity}`;
    const t = `t:${f.pattern}`;
    if (f.count > 0) {
      if (f.direction === 'publish') edges.push([id, t, `publish ${f.count}`, false]);
      else edges.push([t, id, 'subscribe', false]);
    }
    if (f.denied > 0) edges.push([id, t, `${f.direction} denied ${f.denied}`, true]);
  }
  for (const r of map.routes) if (r.topic !== r.filter) edges.push([`t:${r.topic}`, `t:${r.filter}`, 'matches', false]);
  return { identities, patterns, edges };
}

/** Mermaid entity codes: quotes, `#` (entity syntax itself) and angle brackets must not reach the parser. */
function mermaidText(s: string): string {
  return s.replace(/#/g, '#35;').replace(/"/g, '#quot;').replace(/</g, '#lt;').replace(/>/g, '#gt;').replace(/[\r\n]/g, ' ');
}

export function toMermaid(map: DataFlowMap): string {
  const g = graphOf(map);
  const ids = new Map<string, string>();
  const lines = ['flowchart LR', `  %% Bastion data-flow map (ID.AM-3, ID.IS-1), ${map.generatedAt}`];
  g.identities.forEach((identity, n) => {
    ids.set(`i:${identity}`, `i${n}`);
    lines.push(`  i${n}(["${mermaidText(identity)}"])`);
  });
  g.patterns.forEach((pattern, n) => {
    ids.set(`t:${pattern}`, `t${n}`);
    lines.push(`  t${n}[/"${mermaidText(pattern)}"/]`);
  });
  // linkStyle addresses links by their position among the links drawn
  const refused: number[] = [];
  let drawn = 0;
  for (const [from, to, label, isRefused] of g.edges) {
    const a = ids.get(from);
    const b = ids.get(to);
    if (a === undefined || b === undefined) continue;
    lines.push(isRefused ? `  ${a} -.->|"${mermaidText(label)}"| ${b}` : `  ${a} -->|"${mermaidText(label)}"| ${b}`);
    if (isRefused) refused.push(drawn);
    drawn++;
  }
  if (refused.length > 0) lines.push(`  linkStyle ${refused.join(',')} stroke:#c00,color:#c00`);
  return lines.join('\n') + '\n';
}

/** A DOT double-quoted string: backslash and quote escaped, no raw newlines. */
function dotString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/[\r\n]/g, ' ')}"`;
}

export function toDot(map: DataFlowMap): string {
  const g = graphOf(map);
  const lines = [
    'digraph bastion_data_flows {',
    `  // Bastion data-flow map (ID.AM-3, ID.IS-1), ${map.generatedAt}`,
    '  rankdir=LR;',
    '  node [fontname="Helvetica", fontsize=11];',
    '  edge [fontname="Helvetica", fontsize=9];',
  ];
  for (const identity of g.identities) lines.push(`  ${dotString(`i:${identity}`)} [label=${dotString(identity)}, shape=box, style=rounded];`);
  for (const pattern of g.patterns) lines.push(`  ${dotString(`t:${pattern}`)} [label=${dotString(pattern)}, shape=parallelogram];`);
  for (const [from, to, label, refused] of g.edges) {
    lines.push(`  ${dotString(from)} -> ${dotString(to)} [label=${dotString(label)}${refused ? ', style=dashed, color=red, fontcolor=red' : ''}];`);
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}
