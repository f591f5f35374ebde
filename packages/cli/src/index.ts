export { run, buildProgram } from './cli.js';
export { CliError } from './errors.js';
