// A broker process sharing its rate-limit budgets through Redis (test/rate-limit.test.ts starts two).
// Uses the build (packages/broker/dist): `npm test` builds first.
import { createBroker } from '../../packages/broker/dist/index.js';

const broker = await createBroker({
  profile: {
    version: 1,
    listeners: [{ protocol: 'mqtt', host: '127.0.0.1', port: 0 }],
    authentication: { anonymous: true },
    logging: { level: 'silent' },
    rateLimits: {
      store: { redis: { url: process.env.REDIS_URL, keyPrefix: process.env.KEY_PREFIX } },
      connections: { perIp: { rate: 10, per: '60s' } },
      tarpit: false, // refused sockets closed at once: this test counts them, and a held one would wait out the client's timeout
    },
  },
  baseDir: process.cwd(),
});
process.stdout.write(`listening ${Object.values(broker.addresses())[0].port}\n`);
const stop = async () => {
  await broker.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
