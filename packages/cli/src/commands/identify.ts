/**
 * `bastion identify …`: the Identify function of a running broker, through its admin API (same
 * connection options and token handling as `bastion admin`): devices (ID.AM-1), software and its
 * CycloneDX SBOM (ID.AM-2), the data-flow map (ID.AM-3, ID.IS-1) and the cryptographic report
 * (ID.IS-4). `identify software --local` reads this installation instead, without a broker.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { softwareInventory, toCycloneDx } from '@bastion/broker';
import type { CryptoReport, DataFlowMap, DeviceInventory, SoftwareInventory } from '@bastion/broker';
import { CliError } from '../errors.js';
import { api, client } from './admin.js';
import type { Common } from './admin.js';

const out = (s: string): void => void process.stdout.write(s);
const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n';
const dash = (v: unknown) => (v === null || v === undefined || v === '' ? '-' : String(v));
const time = (iso: unknown) => (typeof iso === 'string' ? iso.slice(0, 19).replace('T', ' ') : '-');

/** Columns padded to their widest cell; nothing for no rows. */
function tableText(head: string[], rows: Array<Array<string | number>>): string {
  if (rows.length === 0) return '';
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? '').length)));
  return [head, ...rows].map((r) => r.map((c, i) => String(c ?? '').padEnd(widths[i] as number)).join('  ').trimEnd() + '\n').join('');
}
const table = (head: string[], rows: Array<Array<string | number>>): void => out(tableText(head, rows));

/** Print, or write to --output (a file the operator named; an SBOM or a diagram is not secret). */
function emit(text: string, output: string | undefined): void {
  if (output === undefined) return out(text);
  try {
    writeFileSync(output, text);
  } catch (err) {
    throw new CliError(`cannot write ${output}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  process.stderr.write(`wrote ${output}\n`);
}

async function get<T>(o: Common, path: string): Promise<T> {
  return (await client(o)).request<T>('GET', path);
}

type Flags = Common & { output?: string };

export function register(program: Command): void {
  const identify = program
    .command('identify')
    .description('the Identify function of a running broker (admin API): devices, software (SBOM), data flows, cryptography');

  api(identify.command('devices').description('connected and known devices (ID.AM-1): identity, certificate, last seen; and expected ones never seen'))
    .action(async (o: Flags) => {
      const inv = await get<DeviceInventory>(o, '/v1/identify/devices');
      if (o.json) return out(json(inv));
      out(`${inv.connected} connected, ${inv.known} known since start${inv.evicted > 0 ? ` (${inv.evicted} forgotten)` : ''}\n`);
      table(
        ['CLIENT ID', 'IDENTITY', 'STATUS', 'LISTENER', 'ADDRESS', 'TLS', 'CERT CN', 'SERIAL', 'VALID TO', 'LAST SEEN'],
        inv.devices.map((d) => [
          d.clientId + (d.expected ? ' *' : ''),
          dash(d.identity),
          d.status === 'disconnected' ? `disconnected (${dash(d.lastDisconnect)})` : d.status,
          dash(d.listener),
          d.remoteAddress === null ? '-' : `${d.remoteAddress}:${String(d.remotePort)}`,
          d.tls ? `${dash(d.tls.protocol)}` : '-',
          dash(d.certificate?.commonName),
          dash(d.certificate?.serial),
          d.certificate ? d.certificate.validTo.slice(0, 10) : '-',
          time(d.lastSeen),
        ]),
      );
      if (inv.expected.length > 0) out('* expected by the profile (detectors.availability.expected)\n');
    });

  api(
    identify
      .command('software')
      .description('Bastion, Node.js, OpenSSL and installed packages (ID.AM-2)')
      .option('--cyclonedx', 'print a CycloneDX 1.5 JSON SBOM')
      .option('--local', 'inventory this installation instead of asking a running broker')
      .option('-o, --output <file>', 'write to a file instead of printing'),
  ).action(async (o: Flags & { cyclonedx?: boolean; local?: boolean }) => {
    if (o.local) {
      const inv = await softwareInventory();
      if (o.cyclonedx) return emit(json(toCycloneDx(inv)), o.output);
      return o.json ? emit(json(inv), o.output) : printSoftware(inv, o.output);
    }
    if (o.cyclonedx) return emit(json(await get(o, '/v1/identify/software/cyclonedx')), o.output);
    const inv = await get<SoftwareInventory>(o, '/v1/identify/software');
    return o.json ? emit(json(inv), o.output) : printSoftware(inv, o.output);
  });

  api(
    identify
      .command('flows')
      .description('the data-flow map (ID.AM-3, ID.IS-1): who publishes and subscribes to which topic patterns')
      .option('-f, --format <format>', 'table, json, mermaid or dot', 'table')
      .option('-o, --output <file>', 'write to a file instead of printing'),
  ).action(async (o: Flags & { format: string }) => {
    const format = o.json ? 'json' : o.format;
    if (format === 'mermaid' || format === 'dot') {
      const r = await get<{ text: string }>(o, `/v1/identify/flows/${format}`);
      return emit(r.text, o.output);
    }
    if (format !== 'json' && format !== 'table') throw new CliError(`unknown --format ${format}: use table, json, mermaid or dot`, 2);
    const map = await get<DataFlowMap>(o, '/v1/identify/flows');
    if (format === 'json') return emit(json(map), o.output);
    let text = tableText(
      ['IDENTITY', 'DIRECTION', 'PATTERN', 'COUNT', 'DENIED', 'QOS', 'LAST SEEN'],
      map.flows.map((f) => [f.identity, f.direction, f.pattern, f.count, f.denied, f.qos.join(',') || '-', time(f.lastSeen)]),
    );
    if (map.dropped > 0) text += `(${map.dropped} flows not recorded: the map is full)\n`;
    return emit(text, o.output);
  });

  api(identify.command('crypto').description('TLS versions and cipher suites per listener and per client (ID.IS-4)'))
    .action(async (o: Flags) => {
      const r = await get<CryptoReport>(o, '/v1/identify/crypto');
      if (o.json) return out(json(r));
      out(`Node.js ${r.runtime.node}, OpenSSL ${dash(r.runtime.openssl)}\n\nListeners\n`);
      table(
        ['NAME', 'TRANSPORT', 'ADDRESS', 'TLS FLOOR', 'CLIENT CERTS', 'SERVER KEY', 'CLIENTS', 'NEGOTIATED NOW'],
        r.listeners.map((l) => [
          l.name,
          l.transport,
          `${l.host}:${l.port}`,
          l.tls ? l.tls.minVersion : 'none (plaintext)',
          l.tls ? l.tls.clientCertificate : '-',
          l.tls && 'key' in l.tls.certificate ? `${l.tls.certificate.key.type} ${dash(l.tls.certificate.key.bits ?? l.tls.certificate.key.curve)}` : '-',
          l.now.clients,
          Object.entries(l.now.protocols).map(([p, n]) => `${p}×${n}`).join(' ') || '-',
        ]),
      );
      if (r.clients.length > 0) {
        out('\nClients\n');
        table(['CLIENT ID', 'LISTENER', 'PROTOCOL', 'CIPHER', 'CERT KEY'], r.clients.map((c) => [c.clientId, c.listener, dash(c.protocol), dash(c.cipher), c.certificate ? `${c.certificate.key.type} ${dash(c.certificate.key.bits ?? c.certificate.key.curve)}` : '-']));
      }
      if (r.findings.length > 0) {
        out('\nFindings\n');
        for (const f of r.findings) out(`  ${f.severity}: ${f.listener ? `[${f.listener}] ` : ''}${f.message}\n`);
      }
    });
}

function printSoftware(inv: SoftwareInventory, output: string | undefined): void {
  let text = `Bastion ${inv.bastion.version} on Node.js ${inv.runtime.node} (OpenSSL ${dash(inv.runtime.openssl)}), ${inv.runtime.platform}-${inv.runtime.arch}\n`;
  text += tableText(['NAME', 'VERSION', 'KIND', 'LICENSE'], inv.components.map((c) => [c.name, c.version, c.kind, dash(c.license)]));
  if (inv.missing.length > 0) text += `not installed: ${inv.missing.map((m) => `${m.name} (for ${m.requiredBy})`).join(', ')}\n`;
  emit(text, output);
}
