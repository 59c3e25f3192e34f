import { execa, type ResultPromise } from 'execa';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { BaremetalError } from './errors.js';
import { getLogger } from './logger.js';

const log = getLogger('exec');

/** A failed external command: exit code and stderr are part of the message so they reach last_error/IPA errors. */
export class CommandError extends BaremetalError {
  readonly command: string;
  readonly exitCode: number | undefined;
  readonly stdout: string;
  readonly stderr: string;

  constructor(command: string, exitCode: number | undefined, stdout: string, stderr: string, reason?: string) {
    const why = reason ?? `exit code ${exitCode ?? 'unknown'}`;
    const tail = stderr.trim().split('\n').slice(-5).join(' | ');
    super(`Command failed: ${command} (${why})${tail ? `: ${tail}` : ''}`, {
      code: 'CommandExecutionError',
      status: 500,
    });
    this.command = command;
    this.exitCode = exitCode;
    this.stdout = stdout;
    this.stderr = stderr;
  }
}

export interface RunOptions {
  /** Kill the command after this many ms (SIGKILL after a grace period). */
  timeoutMs?: number;
  /** Data (or a stream) to feed on stdin. */
  input?: string | Buffer | Readable;
  /** Stream stdout here instead of buffering it (stdout in the result is then empty). */
  stdoutTo?: Writable;
  env?: Record<string, string>;
  cwd?: string;
  /** Exit codes that count as success (default [0]). */
  okCodes?: number[];
  /** Arguments to mask in the log line (e.g. passwords), by index. */
  redactArgs?: number[];
  /** Log at debug instead of info (for chatty polling commands). */
  quiet?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/**
 * Every option execa or child_process.spawn reads, as an own property of the object handed over. execa reads
 * options as plain property lookups (`options.shell`, destructuring defaults), so a property missing here would
 * come from Object.prototype if anything ever wrote there; with each one set, nothing inherited can turn on a
 * shell, another uid or a different program. `over` sets what a call needs.
 */
function spawnOptions(over: Record<string, unknown>): Record<string, unknown> {
  const base: Record<string, unknown> = {
    shell: false, node: false, nodePath: process.execPath, nodeOptions: [], preferLocal: false,
    localDir: process.cwd(), cwd: process.cwd(), env: {}, extendEnv: true, argv0: undefined, uid: undefined,
    gid: undefined, detached: false, windowsHide: true, windowsVerbatimArguments: false, cleanup: true,
    reject: false, stripFinalNewline: false, encoding: 'utf8', buffer: true, maxBuffer: 100_000_000, lines: false,
    all: false, input: undefined, inputFile: undefined, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe',
    stdio: undefined, timeout: 0, killSignal: 'SIGTERM', forceKillAfterDelay: true, cancelSignal: undefined,
    gracefulCancel: false, ipc: false, ipcInput: undefined, serialization: 'advanced', verbose: 'none',
  };
  for (const [k, v] of Object.entries(over)) if (v !== undefined) base[k] = v;
  if (over.cwd !== undefined) base.localDir = over.cwd;
  return base;
}

function printable(file: string, args: readonly string[], redact: readonly number[] = []): string {
  return [file, ...args.map((a, i) => (redact.includes(i) ? '***' : /[\s'"]/.test(a) ? JSON.stringify(a) : a))].join(' ');
}

/**
 * The only way this project runs external programs: an argument array (never a shell string), the command line
 * logged, stderr and exit code captured into a CommandError on failure.
 */
export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const line = printable(file, args, opts.redactArgs);
  if (opts.quiet) log.debug({ cmd: line }, 'exec');
  else log.info({ cmd: line }, 'exec');
  const child: ResultPromise = execa(file, args, spawnOptions({
    ...(opts.timeoutMs !== undefined ? { timeout: opts.timeoutMs, forceKillAfterDelay: 2000 } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.input !== undefined
      ? typeof opts.input === 'string' || Buffer.isBuffer(opts.input)
        ? { input: opts.input, stdin: 'pipe' as const }
        : { stdin: opts.input }
      : { stdin: 'ignore' as const }),
    ...(opts.stdoutTo ? { stdout: ['pipe'] as const } : {}),
  }));
  if (opts.stdoutTo && child.stdout) child.stdout.pipe(opts.stdoutTo);
  const r = await child;
  const stdout = typeof r.stdout === 'string' ? r.stdout : '';
  const stderr = typeof r.stderr === 'string' ? r.stderr : '';
  if (r.timedOut) throw new CommandError(line, r.exitCode, stdout, stderr, `timed out after ${opts.timeoutMs} ms`);
  if (r.failed && r.exitCode === undefined) {
    throw new CommandError(line, undefined, stdout, stderr, r.originalMessage ?? r.shortMessage ?? 'could not start');
  }
  const code = r.exitCode ?? 0;
  if (!(opts.okCodes ?? [0]).includes(code)) throw new CommandError(line, code, stdout, stderr);
  return { stdout, stderr, exitCode: code };
}

/** Start a long-running program (VM, BMC simulator, server) and hand back the child; the caller owns its end. */
export function spawnLong(
  file: string,
  args: readonly string[],
  opts: { env?: Record<string, string>; cwd?: string; redactArgs?: number[] } = {},
): ResultPromise {
  log.info({ cmd: printable(file, args, opts.redactArgs) }, 'spawn');
  return execa(file, args, spawnOptions({
    stdin: 'ignore',
    buffer: false,
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  }));
}

/** True when the program is on PATH, or with a slash an executable file (tool checks; tests skipping with a reason). */
export async function have(program: string): Promise<boolean> {
  // The PATH walk `command -v` does, without starting a shell: a process start costs ~0.1 s in an emulated
  // ramdisk, and the agent asks this on its way to the first lookup (mdadm, biosdevname) and in every inventory.
  if (!program) return false;
  // biome-ignore lint/style/noProcessEnv: the search path every run() here inherits (extendEnv), not a setting
  const searchPath = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
  const candidates = program.includes('/') ? [program] : searchPath.split(':').map((dir) => join(dir || '.', program));
  for (const file of candidates) {
    try {
      await access(file, constants.X_OK);
      if ((await stat(file)).isFile()) return true;
    } catch {
      // not there, or not executable: the next PATH entry
    }
  }
  return false;
}

export interface FilterProcess {
  stdin: Writable;
  /** The program's output; null when it was sent to `stdoutTo`. */
  stdout: Readable | null;
  /** Settles when the program exits: its result, or a CommandError (exit code + stderr tail). */
  done: Promise<RunResult>;
  kill(): void;
}

/**
 * A program as a stream filter (e.g. `zstd -dc`): the caller writes stdin and reads stdout itself, nothing of
 * stdout is buffered (so output of any size streams through in constant memory); stderr is kept for the error.
 */
export function spawnFilter(
  file: string,
  args: readonly string[],
  opts: {
    quiet?: boolean;
    /** Write the output to this open file descriptor, or to this socket (one end of a pair the caller reads). */
    stdoutTo?: number | Socket;
  } = {},
): FilterProcess {
  const line = printable(file, args);
  if (opts.quiet) log.debug({ cmd: line }, 'exec filter');
  else log.info({ cmd: line }, 'exec filter');
  const stdout = opts.stdoutTo ?? 'pipe';
  const child = execa(file, args, spawnOptions({ stdin: 'pipe', stdout, buffer: { stdout: false, stderr: true } }));
  const done = child.then((r) => {
    const stderr = typeof r.stderr === 'string' ? r.stderr : '';
    if (r.failed && r.exitCode === undefined && !r.isTerminated) {
      throw new CommandError(line, undefined, '', stderr, r.shortMessage ?? 'could not start');
    }
    if (r.exitCode !== 0) throw new CommandError(line, r.exitCode, '', stderr, r.isTerminated ? `killed by ${r.signal ?? 'signal'}` : undefined);
    return { stdout: '', stderr, exitCode: 0 };
  });
  return { stdin: child.stdin, stdout: opts.stdoutTo === undefined ? child.stdout : null, done, kill: () => child.kill('SIGKILL') };
}
