/**
 * The field message bus example (Appendix A of the OASIS note), end to end: the example's own code
 * (`runScenario`) runs the five parties as mqtt.js clients with certificates from @bastion/pki
 * against a broker made from examples/profiles/energy-field-bus.yaml. Both variants: the nine steps,
 * and the compromised smart meter that is denied, detected, revoked and cut off while everyone else
 * completes.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { runScenario, startFieldBus, TOPICS } from '../examples/field-message-bus/scenario.mjs';
import type { SecurityEvent } from '@bastion/broker';
import { bastion } from './support/cli.js';
import { connect, tryConnect, isRefusal, waitFor } from './support/mqtt.js';

interface Line {
  kind: 'step' | 'info' | 'attack';
  step?: number;
  text: string;
}

const CONTROL = ['tablet-ui-ctl', 'power-supply-ctl', 'dms-ctl', 'capbank-ctl'];
const DATA = ['tablet-ui', 'smart-meter', 'dms', 'capbank'];
const everyone = [...CONTROL, ...DATA].sort();

let fieldBus: { close(): Promise<void> } | undefined;
const clients: mqtt.MqttClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await fieldBus?.close();
  fieldBus = undefined;
});

describe('the field message bus profile', () => {
  it('passes bastion profile check', () => {
    const r = bastion(['profile', 'check', 'examples/profiles/energy-field-bus.yaml'], { cwd: new URL('..', import.meta.url).pathname });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('OK (tier 3, 2 listeners');
  });

  it('keeps the planes apart: each listener trusts only its own CA, each certificate has only its role, and a flooding meter is slowed on its own connection while commands go through', async () => {
    const bus = await startFieldBus();
    fieldBus = bus;
    // a data-plane certificate cannot reach the control listener, nor a control one the data listener
    expect(isRefusal(await tryConnect(bus.url('control'), { clientId: 'smart-meter', ...(await bus.tls('data', 'smart-meter')), ca: (await bus.tls('control', 'dms-ctl')).ca }))).toBe(true);
    expect(isRefusal(await tryConnect(bus.url('data'), { clientId: 'dms-ctl', ...(await bus.tls('control', 'dms-ctl')), ca: (await bus.tls('data', 'dms')).ca }))).toBe(true);
    // a certificate's client id is its CN: nobody takes over another party's session
    expect(isRefusal(await tryConnect(bus.url('data'), { clientId: 'dms', ...(await bus.tls('data', 'smart-meter')) }))).toBe(true);
    // the meter may report, not read what others send (one refusal only: a second one is an attack, see below)
    const meter = await connect(bus.url('data'), { clientId: 'smart-meter', ...(await bus.tls('data', 'smart-meter')) });
    clients.push(meter);
    await expect(meter.subscribeAsync('grid/data/#')).rejects.toThrow(/Subscribe error/); // SUBACK 0x80
    // the DMS still works beside it
    const dms = await connect(bus.url('data'), { clientId: 'dms', ...(await bus.tls('data', 'dms')) });
    clients.push(dms);
    expect((await dms.subscribeAsync(TOPICS.meterVoltage))[0]!.qos).toBe(0);
    const got = new Promise<string>((resolve) => dms.once('message', (_t, p) => resolve(p.toString())));
    await meter.publishAsync(TOPICS.meterVoltage, '{"volts":117}');
    expect(await got).toBe('{"volts":117}');

    // a flooding meter is rate-limited on its own connection, and commands still go through
    const events: SecurityEvent[] = [];
    bus.broker.events.on((e: SecurityEvent) => events.push(e));
    const capbankCtl = await connect(bus.url('control'), { clientId: 'capbank-ctl', ...(await bus.tls('control', 'capbank-ctl')) });
    const dmsCtl = await connect(bus.url('control'), { clientId: 'dms-ctl', ...(await bus.tls('control', 'dms-ctl')) });
    clients.push(capbankCtl, dmsCtl);
    await capbankCtl.subscribeAsync(TOPICS.capbankSwitch, { qos: 1 });
    for (let i = 0; i < 300; i++) meter.publish(TOPICS.meterVoltage, `{"volts":${100 + (i % 20)}}`, { qos: 0 });
    const command = new Promise<string>((resolve) => capbankCtl.once('message', (_t, p) => resolve(p.toString())));
    await dmsCtl.publishAsync(TOPICS.capbankSwitch, '{"command":"close"}', { qos: 1 });
    expect(await command).toBe('{"command":"close"}');
    await waitFor(() => events.some((e) => e.type === 'rate.limited' && e.clientId === 'smart-meter'), 5000, 'the meter rate-limited');
    expect(events.find((e) => e.type === 'rate.limited')).toMatchObject({ clientId: 'smart-meter', listener: 'data', control: 'PR.SS-5', detail: expect.objectContaining({ limit: 'publish.perClient.messages' }) });
    expect(events.filter((e) => e.type === 'rate.limited' && e.clientId !== 'smart-meter')).toEqual([]);
  });
});

describe('the field message bus scenario', () => {
  it('runs the nine steps of Appendix A, commands on the control plane at QoS 1, measurements on the data plane', async () => {
    const lines: Line[] = [];
    const r = await runScenario({ log: (l: Line) => lines.push(l) });
    expect(r.completed).toBe(true);
    expect(lines.filter((l) => l.kind === 'step').map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(lines.find((l) => l.step === 1)!.text).toContain('114 V');
    expect(lines.find((l) => l.step === 9)!.text).toContain('bank closed, 120 V');
    expect(lines.some((l) => l.kind === 'attack')).toBe(false);
    expect(r.diagram).toMatchObject({ bank: 'closed', volts: 120 });
    expect(r.capbank).toEqual({ state: 'closed', commands: ['close'] });
    expect(r.supplyVolts).toBe(120);
    expect(r.connected).toEqual(everyone);
    const events = r.events as SecurityEvent[];
    expect(events.filter((e) => e.type.endsWith('.denied') || e.type.endsWith('.refused') || e.type === 'detection.raised')).toEqual([]);
    // each party authenticated by its certificate on its own plane's listener
    for (const id of everyone) {
      expect(events).toContainEqual(expect.objectContaining({ type: 'auth.succeeded', clientId: id, username: id, listener: CONTROL.includes(id) ? 'control' : 'data' }));
    }
    // Identify saw the same: eight expected devices on their planes, and who sends what where
    const devices = r.identify.devices.devices as Array<{ clientId: string; status: string; expected: boolean; listener: string; certificate: { commonName: string; key: { type: string } } }>;
    expect(devices.map((d) => d.clientId)).toEqual(everyone);
    for (const d of devices) {
      expect(d).toMatchObject({ status: 'connected', expected: true, listener: CONTROL.includes(d.clientId) ? 'control' : 'data', certificate: { commonName: d.clientId, key: { type: 'EC' } } });
    }
    const flows = r.identify.flows.flows as Array<{ identity: string; direction: string; pattern: string; qos: number[]; denied: number }>;
    const publishers = (topic: string) => flows.filter((f) => f.direction === 'publish' && f.pattern === topic).map((f) => f.identity).sort();
    expect(publishers(TOPICS.supplyVoltage)).toEqual(['dms-ctl', 'tablet-ui-ctl']);
    expect(publishers(TOPICS.capbankSwitch)).toEqual(['dms-ctl']);
    expect(publishers(TOPICS.meterVoltage)).toEqual(['smart-meter']);
    for (const f of flows) {
      expect(f.denied).toBe(0);
      // commands only from control-plane identities, at QoS 1; data only from data-plane ones
      if (f.pattern.startsWith('grid/control/')) expect(CONTROL).toContain(f.identity);
      else expect(DATA).toContain(f.identity);
      if (f.pattern.startsWith('grid/control/')) expect(f.qos).toEqual([1]);
    }
    expect(flows.find((f) => f.pattern === TOPICS.meterVoltage && f.direction === 'publish')!.qos).toEqual([0]);
    expect(r.identify.mermaid).toContain('"grid/control/capbank/switch"');
  });

  it('with --attack: the compromised smart meter is denied, detected, revoked and cut off, and the scenario completes for everyone else', async () => {
    const lines: Line[] = [];
    const r = await runScenario({ attack: true, log: (l: Line) => lines.push(l) });
    // everyone else completed, with the bank closed: the meter's "open" never reached the cap bank
    expect(r.completed).toBe(true);
    expect(lines.filter((l) => l.kind === 'step').map((l) => l.step).sort((a, b) => a! - b!)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(r.diagram).toMatchObject({ bank: 'closed', volts: 120 });
    expect(r.capbank.commands).toEqual(['close']);
    expect(r.connected).toEqual(everyone.filter((id) => id !== 'smart-meter'));

    const a = r.attack;
    // denied by the ACL (PR.AC-5), twice
    expect(a.denied).toEqual([1, 2].map((attempt) => ({ attempt, control: 'PR.AC-5', source: 'acl', topic: TOPICS.capbankSwitch, reason: 'not-authorized' })));
    // detected (DE.ID-2)
    expect(a.detection).toMatchObject({ detector: 'topic-scanning', control: 'DE.ID-2' });
    // the response revoked the certificate (RS.RP-1) and the device was kicked
    expect(a.responses).toContainEqual(expect.objectContaining({ action: 'revoke', outcome: 'done', control: 'RS.RP-1', credential: 'certificate' }));
    expect(a.disconnected).toMatchObject({ reason: 'kicked' });
    // the CA listed it in the CRL and the broker reloaded it
    const meterCert = (r.identify.devices.devices as Array<{ clientId: string; certificate: { serial: string } }>).find((d) => d.clientId === 'smart-meter')!.certificate;
    expect(a.revokedInCrl.serial).toBe(meterCert.serial);
    expect(a.crlReloaded.crlNumber).toBeGreaterThan(0);
    // and it cannot come back
    expect(a.refused).toMatchObject({ control: 'RS.RP-1', message: expect.stringContaining(meterCert.serial) });

    const events = r.events as SecurityEvent[];
    const beforeClose = events.filter((e) => e.reason !== 'broker-closing');
    // nobody else was refused, denied or disconnected
    expect(beforeClose.filter((e) => (e.type === 'publish.denied' || e.type === 'subscribe.denied' || e.type === 'client.disconnected' || e.type === 'connection.refused') && e.clientId !== 'smart-meter' && e.clientId !== undefined)).toEqual([]);
    expect(beforeClose.filter((e) => e.type === 'client.disconnected').map((e) => e.clientId)).toEqual(['smart-meter']);
    expect(events).toContainEqual(expect.objectContaining({ type: 'crl.loaded', detail: expect.objectContaining({ newlyRevoked: [meterCert.serial] }) }));
    // the data-flow map shows the refused command
    expect(r.identify.flows.flows).toContainEqual(expect.objectContaining({ identity: 'smart-meter', direction: 'publish', pattern: TOPICS.capbankSwitch, count: 0, denied: 2 }));
    expect(r.identify.devices.devices).toContainEqual(expect.objectContaining({ clientId: 'smart-meter', status: 'disconnected', lastDisconnect: 'kicked' }));
    // it said so as it happened
    const said = lines.filter((l) => l.kind === 'attack').map((l) => l.text);
    expect(said.some((t) => t.startsWith('denied by the ACL (PR.AC-5)'))).toBe(true);
    expect(said.some((t) => t.startsWith('detected (DE.ID-2, topic-scanning'))).toBe(true);
    expect(said.some((t) => t.startsWith('response (RS.RP-1)'))).toBe(true);
    expect(said.some((t) => t.startsWith('the meter tries to reconnect: refused'))).toBe(true);
  });

  it('keeps a run\'s PKI and its hash-chained audit log when given a directory, and the audit chain verifies', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bastion-field-bus-kept-'));
    try {
      await runScenario({ dir });
      expect(existsSync(path.join(dir, 'field-message-bus/pki/data/ca.pem'))).toBe(true);
      const log = path.join(dir, 'field-message-bus/audit/audit.log');
      const verify = bastion(['audit', 'verify', log]);
      expect(verify.code, verify.stderr).toBe(0);
      // the commands left receipts (non-repudiation): who sent which command
      expect(readFileSync(log, 'utf8')).toContain('grid/control/capbank/switch');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
