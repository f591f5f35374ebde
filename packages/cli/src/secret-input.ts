/**
 * Secrets at the terminal. Read one without echoing it: raw mode on a TTY, or one line from a pipe
 * (for scripts: `printf 'pw\n' | bastion passwd users.txt alice`). Show a generated one once.
 */
import type { ReadStream } from 'node:tty';

/** A generated secret (a device token) alone on stdout, for a script to capture; what happened on stderr. */
export function showSecretOnce(what: string, secret: string): void {
  process.stderr.write(`${what}; it is shown once, here:\n`);
  process.stdout.write(`${secret}\n`);
}

export async function readSecret(prompt: string, input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stderr): Promise<string> {
  if (!input.isTTY) return readLine(input);
  output.write(prompt);
  const tty = input as unknown as ReadStream;
  tty.setRawMode(true);
  input.resume();
  input.setEncoding('utf8');
  try {
    return await new Promise<string>((resolve, reject) => {
      let value = '';
      const onData = (chunk: string) => {
        for (const ch of chunk) {
          if (ch === '\r' || ch === '\n') {
            input.off('data', onData);
            output.write('\n');
            return resolve(value);
          }
          if (ch === '\u0003') {
            input.off('data', onData);
            output.write('\n');
            return reject(new Error('cancelled'));
          }
          if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
          else value += ch;
        }
      };
      input.on('data', onData);
    });
  } finally {
    tty.setRawMode(false);
    input.pause();
  }
}

let buffered: string[] | undefined;

async function readLine(input: NodeJS.ReadStream): Promise<string> {
  if (buffered === undefined) {
    let all = '';
    input.setEncoding('utf8');
    for await (const chunk of input) all += chunk as string;
    buffered = all.split(/\r?\n/);
  }
  return buffered.shift() ?? '';
}
