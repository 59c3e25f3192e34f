/**
 * What an extension command is. Extensions (agent/extensions/*) register commands by name; several modules may
 * contribute commands to one extension (e.g. standby's power commands and its image commands).
 */
import type { ZodType } from 'zod';
import type { Logger } from '../../common/logger.js';
import type { AgentLifecycle } from '../lifecycle.js';

export interface CommandContext {
  log: Logger;
  /** Merge progress fields into the running command's command_result (rate-limited by the executor). */
  progress(update: Record<string, unknown>): void;
  /** Aborted on agent shutdown. */
  signal: AbortSignal;
  /** The running agent: its node from lookup, stop serving (power-off, reboot, lockdown). */
  agent: AgentLifecycle;
}

export interface CommandDef<P = Record<string, unknown>> {
  /** Async commands run in the background (RUNNING at once); sync ones complete inside the request. */
  async: boolean;
  /** Validated before anything runs: a failure is a 400 InvalidCommandParamsError, never a started command. */
  params?: ZodType<P>;
  run(params: P, ctx: CommandContext): Promise<unknown>;
  /**
   * The result carries data only the token holder may see (system logs): a token-less command list (Ironic 21.4)
   * shows it as null. Ironic fetches such results from the POST answer (`wait=true`), which needs the token.
   */
  confidentialResult?: boolean;
}

export type ExtensionCommands = Record<string, CommandDef<never>>;
