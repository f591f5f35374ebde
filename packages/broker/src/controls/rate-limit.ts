import { rateLimit } from '@bastion/middleware';
import type { Bans } from '@bastion/middleware';
import type { ControlFactory } from '../controls.js';

/**
 * PR.SS-5: rate limits from `rateLimits` (tier defaults when absent, off with `enabled: false`).
 * At start the open-connection caps go to the core (counted at TCP accept) and `ban` consequences
 * go to the `bans` control, so rate-limit bans show up, expire and lift like every other ban.
 */
export const rateLimitControl: ControlFactory = ({ profile, logger }) => {
  const settings = profile.rateLimits;
  if (!settings) return undefined;
  const mw = rateLimit(settings);
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
      },
    ],
  };
};
