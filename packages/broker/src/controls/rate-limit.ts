import { isDeepStrictEqual } from 'node:util';
import { rateLimit } from '@bastion/middleware';
import type { Bans } from '@bastion/middleware';
import type { Profile } from '@bastion/profile';
import { RestartRequired } from '../controls.js';
import type { ControlFactory, Reconfigurable } from '../controls.js';

type Store = NonNullable<Profile['rateLimits']>['store'];
/** What changed about the store, without the Redis URL (it may hold a password). */
const storeChange = (a: Store, b: Store): string => (a.type !== b.type ? `${a.type} → ${b.type}` : 'another Redis URL or key prefix');

/**
 * PR.SS-5: rate limits from `rateLimits` (tier defaults when absent, off with `enabled: false`).
 * At start the open-connection caps go to the core (counted at TCP accept) and `ban` consequences
 * go to the `bans` control, so rate-limit bans show up, expire and lift like every other ban.
 *
 * A reload changes the limits in place (`update`): connected clients meet them from their next
 * packet. Another store (memory ↔ Redis, another Redis) is refused: the counts could not move over
 * atomically.
 */
export const rateLimitControl: ControlFactory = ({ profile, logger }) => {
  const settings = profile.rateLimits;
  if (!settings) return undefined;
  let store = settings.store;
  const live: Reconfigurable = {
    prepare(next) {
      const s = next.rateLimits;
      if (s !== undefined && !isDeepStrictEqual(s.store, store)) throw new RestartRequired('rateLimits.store', `rateLimits.store changed (${storeChange(store, s.store)})`);
      return undefined;
    },
    reconfigure(next) {
      const s = next.rateLimits;
      if (s === undefined) return; // turning the control off is refused before (reload.ts)
      // every part given: what the new profile leaves out is off, not kept
      mw.update({ connections: s.connections, concurrent: s.concurrent, publish: s.publish, subscribe: s.subscribe, authFailures: s.authFailures, tarpit: s.tarpit });
      store = s.store;
    },
  };
  const mw = Object.assign(rateLimit(settings), live);
  return {
    phase: 'limit',
    middleware: [mw],
    services: [
      {
        name: 'rate-limit',
        controls: ['PR.SS-5'],
        async start(broker) {
          mw.bindCore(broker);
          mw.setBanner(broker.controls.get<Bans>('bans'));
          try {
            await mw.ready();
          } catch (err) {
            // each process counts on its own (insurance limiter) until Redis answers
            logger.warn({ err }, 'rate-limit store not reachable yet; limits are counted per process meanwhile');
          }
        },
        stop() {},
        reconfigure() {}, // the middleware above takes the change
      },
    ],
  };
};
