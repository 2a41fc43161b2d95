// Run external programs from tests: a promise of stdout/stderr, and an error that quotes the
// command line and what it printed, so a failing skopeo or ctr call explains itself.
import { execFile } from "node:child_process";

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Milliseconds before the program is killed (default 120 s). */
  timeout?: number;
  /** Bytes written to the program's stdin. */
  input?: string | Uint8Array;
  /** Return stdout as raw bytes instead of text. */
  binary?: boolean;
}

export interface RunResult<T = string> {
  stdout: T;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly code: number | string | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`\`${command}\` failed (${code}):\n${stderr.trim() || stdout.trim()}`);
    this.name = "CommandError";
  }
}

const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`);
export const commandLine = (cmd: string, args: readonly string[]) => [cmd, ...args].map(quote).join(" ");

export function run(cmd: string, args: readonly string[], options: RunOptions & { binary: true }): Promise<RunResult<Buffer>>;
export function run(cmd: string, args: readonly string[], options?: RunOptions): Promise<RunResult<string>>;
export function run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult<string | Buffer>> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      {
        cwd: options.cwd,
        env: options.env ?? process.env,
        timeout: options.timeout ?? 120_000,
        maxBuffer: 256 * 1024 * 1024,
        encoding: "buffer",
      },
      (error, stdout, stderr) => {
        const err = stderr.toString("utf8");
        if (error) {
          const code = (error as NodeJS.ErrnoException & { code?: unknown }).code;
          const signal = (error as { signal?: string | null }).signal;
          reject(new CommandError(commandLine(cmd, args), (code as number | string | undefined) ?? signal ?? null, stdout.toString("utf8"), err));
          return;
        }
        resolve({ stdout: options.binary ? stdout : stdout.toString("utf8"), stderr: err });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}
