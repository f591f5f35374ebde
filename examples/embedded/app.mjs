// Bastion embedded in an application: a broker from a profile object, a custom middleware, the
// security event stream, and an mqtt.js client talking to it. Run: node examples/embedded/app.mjs
import mqtt from 'mqtt';
import { createBroker, deny } from '@bastion/broker';

// Refuse publishing to anything under config/ unless the client is in the 'operators' group.
const configGuard = {
  name: 'config-guard',
  controls: ['PR.AC-5'],
  authorizePublish: (client, packet) =>
    packet.topic.startsWith('config/') && !client.groups.includes('operators') ? deny('not-authorized', 'operators only', 'drop') : undefined,
};

const broker = await createBroker({
  profile: {
    version: 1,
    name: 'embedded-example',
    listeners: [{ protocol: 'mqtt', host: '127.0.0.1', port: Number(process.env.PORT ?? 0) }],
    authentication: { anonymous: true },
    logging: { level: 'warn' },
  },
  middleware: [configGuard],
});

broker.events.on((event) => {
  if (event.type.endsWith('.denied')) console.log(`security: ${event.type} ${event.topic} by ${event.clientId} (${event.control}, ${event.reason})`);
});

const { port } = Object.values(broker.addresses())[0];
console.log(`broker listening on 127.0.0.1:${port}`);

const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'app-client' });
await client.subscribeAsync('#');
client.on('message', (topic, payload) => console.log(`received ${topic}: ${payload}`));
await client.publishAsync('telemetry/temp', '21.5', { qos: 1 });
await client.publishAsync('config/setpoint', '99', { qos: 1 }); // dropped by config-guard
await new Promise((r) => setTimeout(r, 200));
console.log('connected clients:', [...broker.clients()].map((c) => `${c.id}@${c.remoteAddress} via ${c.listener}`).join(', '));
await client.endAsync();
await broker.close();
console.log('closed');
