import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * One pino root logger per process. Level from LOG_LEVEL (or `debug` when the agent's ipa-debug is set);
 * JSON lines on stderr so stdout stays free for CLI output and benchmark figures.
 */
const level = (process.env.LOG_LEVEL as LevelWithSilent | undefined) ?? 'info';
export const rootLogger: Logger = pino({ level, base: { pid: process.pid } }, pino.destination(2));

export function getLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ component, ...bindings });
}

export function setLogLevel(l: LevelWithSilent): void {
  rootLogger.level = l;
}
