import { pino, type Logger, type LevelWithSilent } from 'pino';
import { maskSecrets, maskText } from './secrets.js';

export type { Logger };

/**
 * One pino root logger per process, at `info` until the entry point sets the level (setLogLevel: LOG_LEVEL read by
 * the CLI entry points through logLevelFrom, or `debug` when the agent's ipa-debug is set); JSON lines on stderr
 * so stdout stays free for CLI output and benchmark figures.
 */
const LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** The level LOG_LEVEL names in this environment, or `fallback` when unset or not a level. */
export function logLevelFrom(env: Readonly<Record<string, string | undefined>>, fallback: LevelWithSilent = 'info'):
  LevelWithSilent {
  const v = env.LOG_LEVEL;
  return LEVELS.find((l) => l === v) ?? fallback;
}
// A multistream so a process can add a log file later (the agent's ipa-log-file); levels filter in the logger.
const streams = pino.multistream([{ level: 'trace', stream: pino.destination(2) }]);
// Secrets never reach a log line: password/token-like keys at any depth, URL userinfo and `token=...` in messages.
export const rootLogger: Logger = pino({
  level: 'info', base: { pid: process.pid },
  formatters: { log: (obj) => maskSecrets(obj) },
  hooks: {
    logMethod(args, method) {
      const masked = args.map((a) => (typeof a === 'string' ? maskText(a) : a)) as typeof args;
      method.apply(this, masked);
    },
  },
}, streams);

/** Also write every log line to this file (created with its directory if needed). */
export function addLogFile(path: string): void {
  streams.add({ level: 'trace', stream: pino.destination({ dest: path, mkdir: true, sync: true, append: true }) });
}

export function getLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ component, ...bindings });
}

export function setLogLevel(l: LevelWithSilent): void {
  rootLogger.level = l;
}
