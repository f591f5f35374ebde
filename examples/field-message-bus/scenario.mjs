// The field message bus of Appendix A of the OASIS note, end to end on one Bastion broker.
//
// Five parties, each a separate mqtt.js client with its own certificate (two, for the parties that
// use both planes), run the nine steps of the note. With `attack: true` the smart meter is
// compromised after step 7 and tries to command the cap bank: the ACL denies it, a detector sees it,
// the response engine revokes its certificate and cuts it off, the CA lists it in the CRL (which the
// broker reloads), its reconnection is refused — and the scenario completes for everyone else.
//
//   import { runScenario } from './scenario.mjs';
//   const result = await runScenario({ attack: true, log: (line) => console.log(line.text) });
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { createBroker } from '@bastion/broker';
import { loadProfile } from '@bastion/profile';
import { revokeInDir } from '@bastion/pki';
import { makeFieldBusPki, tlsFor } from './pki.mjs';

export const PROFILE = fileURLToPath(new URL('../profiles/energy-field-bus.yaml', import.meta.url));

/** Commands (control plane) under grid/control/, measurements and status (data plane) under grid/data/. */
export const TOPICS = {
  supplyVoltage: 'grid/control/power-supply/voltage',
  capbankSwitch: 'grid/control/capbank/switch',
  meterVoltage: 'grid/data/smart-meter/voltage',
  capbankState: 'grid/data/capbank/state',
  diagram: 'grid/data/dms/single-line',
};

/** Commands are acknowledged and redelivered (QoS 1); measurements are samples, the next one replaces a lost one (QoS 0). */
export const QOS = { command: 1, status: 1, measurement: 0 };

const LOW_VOLTS = 114;
const RAISED_VOLTS = 120;

/** Resolve with the promise, or reject naming what did not happen in time. */
function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`field bus: ${what} did not happen within ${ms} ms`)), ms);
    }),
  ]);
}

/** A promise with its resolve function. */
function latch() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/** Connect once (no automatic reconnect); resolves { client } or { refused: message }. */
function connectOnce(url, opts) {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts });
    let settled = false;
    const settle = (v) => {
      if (settled) return;
      settled = true;
      if (v.refused) client.end(true);
      resolve(v);
    };
    client.once('connect', () => settle({ client }));
    client.once('error', (err) => settle({ refused: err.message }));
    client.once('close', () => settle({ refused: 'connection closed before CONNACK' }));
  });
}

/**
 * Make a fresh PKI, load the profile with its paths pointing there, and start the broker on free
 * ports. The profile's paths are relative to examples/profiles/ (../field-message-bus/pki/…):
 * resolving them from <root>/profiles puts the PKI at <root>/field-message-bus/pki, new for every run.
 * `dir`: the root to use (default a temp dir, removed by close()).
 */
export async function startFieldBus({ dir } = {}) {
  const root = dir ?? (await mkdtemp(path.join(tmpdir(), 'bastion-field-bus-')));
  try {
    const pkiDir = path.join(root, 'field-message-bus', 'pki');
    await makeFieldBusPki(pkiDir);
    const profile = await loadProfile(PROFILE, { baseDir: path.join(root, 'profiles') });
    for (const l of profile.listeners) l.port = 0; // any free port: runs never collide
    profile.logging.level = 'silent'; // the scenario reports what matters; the events are returned
    const broker = await createBroker({ profile });
    const addresses = broker.addresses();
    return {
      broker,
      profile,
      pkiDir,
      /** mqtts://localhost:<port> of the `control` or `data` listener. */
      url: (plane) => `mqtts://localhost:${addresses[plane].port}`,
      /** mqtt.js TLS options of one party's certificate. */
      tls: (plane, name) => tlsFor(pkiDir, plane, name),
      async close() {
        await broker.close();
        if (dir === undefined) await rm(root, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (dir === undefined) await rm(root, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Run the scenario. Options:
 *   attack     — the compromised-meter variant (default false)
 *   log        — called with { kind: 'step' | 'info' | 'attack', step?, text } as things happen
 *   timeoutMs  — how long any one stage may take (default 15 s)
 *   dir        — where to make the PKI and the audit log (default: a fresh temp dir, removed afterwards)
 * Resolves with what happened: steps, the diagram the tablet showed, the attack's outcome, the
 * broker's security events and the identify reports (devices, data flows) taken before closing.
 */
export async function runScenario({ attack = false, log = () => {}, timeoutMs = 15_000, dir } = {}) {
  const clients = [];
  let fieldBus;
  const steps = [];
  const events = [];
  const bus = new EventEmitter(); // security events, for the waits below
  bus.setMaxListeners(0);
  const say = (kind, text, step) => log(step === undefined ? { kind, text } : { kind, step, text });
  const step = (n, text) => {
    steps.push({ step: n, text, at: Date.now() });
    say('step', text, n);
  };
  /** The first security event (from index `from` on) that matches, now or when it comes. */
  const nextEvent = (match, what, from = 0) =>
    within(
      new Promise((resolve) => {
        const seen = events.slice(from).find(match);
        if (seen) return resolve(seen);
        const on = (e) => {
          if (!match(e)) return;
          bus.off('event', on);
          resolve(e);
        };
        bus.on('event', on);
      }),
      timeoutMs,
      what,
    );

  try {
    // --- the broker, from the profile, with a PKI made for this run ---------------------------------
    fieldBus = await startFieldBus({ dir });
    const { broker, profile, pkiDir, url } = fieldBus;
    broker.events.on((e) => {
      events.push(e);
      bus.emit('event', e);
    });
    say('info', `broker "${profile.name}" (tier ${profile.tier}): control plane on ${url('control')}, data plane on ${url('data')}`);

    const party = async (name, plane) => {
      const c = await connectOnce(url(plane), { clientId: name, clean: true, ...(await tlsFor(pkiDir, plane, name)) });
      if (c.refused) throw new Error(`field bus: ${name} could not connect to the ${plane} listener: ${c.refused}`);
      clients.push(c.client);
      return c.client;
    };
    const subscribe = async (client, topic, qos) => {
      const granted = await client.subscribeAsync(topic, { qos });
      if (granted.some((g) => g.qos === 128)) throw new Error(`field bus: subscription to ${topic} refused`);
    };
    const json = (payload) => JSON.parse(payload.toString());

    // --- the five parties ----------------------------------------------------------------------------
    const tabletCtl = await party('tablet-ui-ctl', 'control');
    const tablet = await party('tablet-ui', 'data');
    const supply = await party('power-supply-ctl', 'control');
    const meter = await party('smart-meter', 'data');
    const dmsCtl = await party('dms-ctl', 'control');
    const dms = await party('dms', 'data');
    const capbankCtl = await party('capbank-ctl', 'control');
    const capbank = await party('capbank', 'data');
    say('info', 'eight connections up: each party on the plane(s) it uses, each with its own certificate');

    const wire = new EventEmitter(); // the power supply feeds the meter through a cable, not the bus
    const complete = latch();
    const meterDone = latch();
    const state = { supplyVolts: 0, capbank: 'open', capbankCommands: [], dms: { volts: undefined, bank: 'open', closing: false, raised: false, drawn: false }, shown: undefined };

    // Power supply: obeys voltage commands (control plane).
    await subscribe(supply, TOPICS.supplyVoltage, QOS.command);
    supply.on('message', (_topic, payload) => {
      const { volts } = json(payload);
      state.supplyVolts = volts;
      wire.emit('volts', volts);
    });

    // Smart meter: measures what it is fed and reports changes (data plane).
    wire.on('volts', (volts) => {
      step(volts === LOW_VOLTS ? 2 : 7, volts === LOW_VOLTS ? `Smart meter sees ${volts} V and publishes its voltage status change (${TOPICS.meterVoltage}, QoS ${QOS.measurement})` : `Power supply applies ${volts} V; the smart meter publishes its voltage status change, ${volts} V`);
      meter.publish(TOPICS.meterVoltage, JSON.stringify({ volts, at: new Date().toISOString() }), { qos: QOS.measurement }, () => {
        if (volts === RAISED_VOLTS) meterDone.resolve();
      });
    });

    // Cap bank controller: opens or closes on command (control plane), reports its state (data plane).
    await subscribe(capbankCtl, TOPICS.capbankSwitch, QOS.command);
    capbankCtl.on('message', (_topic, payload) => {
      const { command } = json(payload);
      state.capbankCommands.push(command);
      state.capbank = command === 'close' ? 'closed' : 'open';
      if (command === 'close') step(5, `Cap bank controller closes the bank and publishes its new state, closed (${TOPICS.capbankState})`);
      capbank.publish(TOPICS.capbankState, JSON.stringify({ state: state.capbank }), { qos: QOS.status });
    });

    // DMS: watches status (data plane), decides, commands (control plane), draws the diagram.
    await subscribe(dms, TOPICS.meterVoltage, QOS.measurement);
    await subscribe(dms, TOPICS.capbankState, QOS.status);
    const diagram = () => ({ bank: state.dms.bank, volts: state.dms.volts, drawnAt: new Date().toISOString() });
    dms.on('message', (topic, payload) => {
      const m = json(payload);
      const d = state.dms;
      if (topic === TOPICS.meterVoltage) {
        d.volts = m.volts;
        if (m.volts < 118 && d.bank !== 'closed' && !d.closing) {
          d.closing = true;
          step(3, `DMS receives ${m.volts} V and updates its status: voltage low`);
          step(4, `DMS publishes a control command to the cap bank controller: close the bank (${TOPICS.capbankSwitch}, QoS ${QOS.command})`);
          dmsCtl.publish(TOPICS.capbankSwitch, JSON.stringify({ command: 'close' }), { qos: QOS.command });
        } else if (m.volts >= 118 && d.bank === 'closed' && !d.drawn) {
          d.drawn = true;
          step(8, `DMS publishes the updated single-line diagram to the Tablet UI: bank closed, ${m.volts} V (${TOPICS.diagram})`);
          dms.publish(TOPICS.diagram, JSON.stringify(diagram()), { qos: QOS.status });
        }
      } else if (topic === TOPICS.capbankState) {
        d.bank = m.state;
        if (m.state === 'closed' && !d.raised) {
          d.raised = true;
          step(6, `DMS updates its single-line diagram (bank closed) and publishes a raise-voltage command, ${RAISED_VOLTS} V, to the power supply`);
          dmsCtl.publish(TOPICS.supplyVoltage, JSON.stringify({ volts: RAISED_VOLTS, by: 'dms' }), { qos: QOS.command });
        }
      }
    });

    // Tablet UI: shows the diagram (data plane); sets the test voltage (control plane).
    await subscribe(tablet, TOPICS.diagram, QOS.status);
    tablet.on('message', (_topic, payload) => {
      state.shown = json(payload);
      step(9, `Tablet UI receives and shows the diagram: bank ${state.shown.bank}, ${state.shown.volts} V — scenario complete`);
      complete.resolve();
    });

    // --- the attack: the meter, compromised after step 7, tries to command the cap bank --------------
    const attackOutcome = attack ? meterDone.promise.then(() => compromisedMeter()) : Promise.resolve(undefined);

    async function compromisedMeter() {
      const out = { attempts: 0, denied: [], detection: undefined, responses: [], disconnected: undefined, revokedInCrl: undefined, crlReloaded: undefined, refused: undefined };
      const open = JSON.stringify({ command: 'open', by: 'smart-meter' });
      say('attack', `the smart meter is compromised: it publishes "open" to ${TOPICS.capbankSwitch} (a command; it may only report measurements)`);
      // The CA's side (a security operator, or automation): when the broker revokes a certificate,
      // list it in the CRL, so the revocation outlives this process and reaches every broker.
      const ca = nextEvent((e) => e.type === 'response.action' && e.detail?.action === 'revoke' && e.detail?.outcome === 'done', 'the response revoking the meter').then(async (e) => {
        const r = await revokeInDir(path.join(pkiDir, 'data'), 'smart-meter', 'keyCompromise');
        out.revokedInCrl = { serial: r.entry.serial, crl: r.crlPath };
        say('attack', `CA: smart-meter (serial ${r.entry.serial}) added to the data-plane CRL; the broker's watcher reloads it`);
        const loaded = await nextEvent((x) => x.type === 'crl.loaded' && (x.detail?.newlyRevoked ?? []).includes(r.entry.serial), 'the CRL reload');
        out.crlReloaded = { file: loaded.detail.file, crlNumber: loaded.detail.crlNumber };
        say('attack', `broker reloaded the CRL (number ${loaded.detail.crlNumber}): smart-meter stays revoked across restarts`);
      });
      ca.catch(() => {}); // awaited below once the response happened; never an unhandled rejection
      // Two commands in a row on its live connection: each is refused and dropped by the ACL.
      for (let attempt = 1; attempt <= 2; attempt++) {
        const from = events.length;
        meter.publish(TOPICS.capbankSwitch, open, { qos: QOS.command });
        const denied = await nextEvent((e) => e.type === 'publish.denied' && e.clientId === 'smart-meter', 'the ACL denial', from);
        out.attempts = attempt;
        out.denied.push({ attempt, control: denied.control, source: denied.source, topic: denied.topic, reason: denied.reason });
        say('attack', `denied by the ACL (${denied.control}): "open" to ${denied.topic} is dropped, the cap bank never sees it`);
      }
      const gone = new Promise((resolve) => (meter.connected ? meter.once('close', resolve) : resolve()));
      const detection = await nextEvent((e) => e.type === 'detection.raised' && e.username === 'smart-meter' && e.detail?.key === 'username', 'the detection');
      out.detection = { control: detection.control, detector: detection.detail.detector, severity: detection.detail.severity, message: detection.message };
      say('attack', `detected (${detection.control}, ${detection.detail.detector}, ${detection.detail.severity}): ${detection.message}`);
      await within(gone, timeoutMs, 'the meter being disconnected');
      for (const r of events.filter((e) => e.type === 'response.action' && e.detail?.detection === detection.detail.id)) {
        out.responses.push({ action: r.detail.action, outcome: r.detail.outcome, control: r.control, credential: r.detail.credential, serial: r.detail.serial });
        const what = r.detail.action === 'revoke' && r.detail.credential === 'certificate' ? 'its certificate revoked at once (in memory, by the revocation control)' : r.detail.action;
        say('attack', `response (${r.control}): ${what}: ${r.detail.outcome}${r.detail.why ? ` (${r.detail.why})` : ''}`);
      }
      const kicked = events.find((e) => e.type === 'client.disconnected' && e.clientId === 'smart-meter');
      out.disconnected = kicked ? { reason: kicked.reason, message: kicked.message } : undefined;
      say('attack', `smart-meter disconnected (${kicked?.reason ?? '?'}${kicked?.message ? `: ${kicked.message}` : ''})`);
      await within(ca, timeoutMs, 'the CRL update');
      // The compromised firmware tries to come back.
      const from = events.length;
      const again = await connectOnce(url('data'), { clientId: 'smart-meter', ...(await tlsFor(pkiDir, 'data', 'smart-meter')) });
      if (again.client) {
        clients.push(again.client);
        say('attack', 'the meter reconnected: the revocation did NOT hold');
      } else {
        const why = await nextEvent((e) => e.type === 'connection.refused' && e.source === 'revocation', 'the refusal of the revoked meter', from);
        out.refused = { control: why.control, message: why.message };
        say('attack', `the meter tries to reconnect: refused before CONNECT (${why.control}): ${why.message}`);
      }
      return out;
    }

    // --- go ------------------------------------------------------------------------------------------
    step(1, `Tablet UI publishes a low voltage, ${LOW_VOLTS} V, for the power supply to apply (${TOPICS.supplyVoltage}, QoS ${QOS.command}, control plane)`);
    tabletCtl.publish(TOPICS.supplyVoltage, JSON.stringify({ volts: LOW_VOLTS, by: 'tablet-ui' }), { qos: QOS.command });
    await within(complete.promise, timeoutMs, `step ${steps.length + 1}`);
    const attackResult = await within(attackOutcome, timeoutMs * 2, 'the attack and its response');

    const identify = broker.controls.get('identify');
    const result = {
      completed: steps.length === 9 && state.shown !== undefined,
      steps,
      diagram: state.shown,
      capbank: { state: state.capbank, commands: state.capbankCommands },
      supplyVolts: state.supplyVolts,
      attack: attackResult,
      connected: [...broker.clients()].map((c) => c.id).sort(),
      events,
      identify: { devices: identify.devices(), flows: identify.flows(), mermaid: identify.flowsAs('mermaid') },
    };
    return result;
  } finally {
    for (const c of clients) c.end(true);
    await fieldBus?.close();
  }
}
