import { run } from './cli.js';

const code = await run(process.argv.slice(2));
// `start` keeps running until a signal; everything else ends here.
if (code !== 0 || !process.argv.slice(2).includes('start')) process.exitCode = code;
