#!/usr/bin/env node
// Run the field message bus scenario and print it as it happens.
//   node examples/field-message-bus/run.mjs            the nine steps of Appendix A
//   node examples/field-message-bus/run.mjs --attack   the smart meter, compromised, attacks the cap bank
//   add --map to print the data-flow map (Mermaid) the broker drew, --events for the security events
import { runScenario } from './scenario.mjs';

const args = new Set(process.argv.slice(2));
const unknown = [...args].filter((a) => !['--attack', '--map', '--events', '--help', '-h'].includes(a));
if (args.has('--help') || args.has('-h') || unknown.length > 0) {
  if (unknown.length > 0) console.error(`unknown option: ${unknown.join(' ')}`);
  console.error('usage: node examples/field-message-bus/run.mjs [--attack] [--map] [--events]');
  process.exit(unknown.length > 0 ? 2 : 0);
}

const attack = args.has('--attack');
const started = Date.now();
const ms = () => String(Date.now() - started).padStart(5);
const print = ({ kind, step, text }) => {
  if (kind === 'step') console.log(`${ms()} ms  ${step}. ${text}`);
  else if (kind === 'attack') console.log(`${ms()} ms     ! ${text}`);
  else console.log(`${ms()} ms     ${text}`);
};

console.log(`Field message bus (Appendix A of "MQTT and the NIST Cybersecurity Framework")${attack ? ' — attack variant' : ''}\n`);
try {
  const r = await runScenario({ attack, log: print });
  console.log('');
  console.log(`scenario ${r.completed ? 'complete' : 'NOT complete'}: the tablet shows bank ${r.diagram?.bank}, ${r.diagram?.volts} V; the cap bank received ${JSON.stringify(r.capbank.commands)}`);
  if (r.attack) {
    const a = r.attack;
    console.log(`attack: ${a.denied.length} command(s) denied by the ACL, detected by ${a.detection?.detector ?? 'nothing'}, certificate ${a.revokedInCrl?.serial ?? '?'} revoked and in the CRL, reconnection ${a.refused ? 'refused' : 'NOT refused'}`);
  }
  const devices = r.identify.devices;
  console.log(`identify: ${devices.connected} devices connected at the end of ${devices.known} seen: ${devices.devices.map((d) => `${d.clientId} (${d.status})`).join(', ')}`);
  if (args.has('--map')) console.log(`\ndata-flow map (Mermaid):\n${r.identify.mermaid}`);
  if (args.has('--events')) for (const e of r.events) console.log(`  ${e.type} ${e.control} ${e.clientId ?? ''} ${e.topic ?? ''} ${e.message ?? ''}`);
  process.exitCode = r.completed && (!attack || (r.attack?.refused && r.attack?.revokedInCrl)) ? 0 : 1;
} catch (err) {
  console.error(`field bus failed: ${err.message}`);
  process.exitCode = 1;
}
