/**
 * What extensions may ask of the running agent: its node (from lookup), and to stop serving (power-off, reboot,
 * lockdown). main.ts builds one per agent and hands it to the command executor, which passes it to every command
 * as `ctx.agent` (agent/commands/types.ts), so extensions hold no agent state.
 */
import type { LookupConfig, LookupNode } from '../protocol/lookup.js';

export type EndReason = 'power_off' | 'reboot' | 'lockdown' | 'rescue';

export interface AgentLifecycle {
  /**
   * Stop serving the API and heartbeating once the current response is out. `exit`: end the agent process with
   * code 0 (outside the ramdisk this is what a power-off looks like); otherwise stay alive without serving.
   * Resolves once the server is closed.
   */
  stopServing(reason: EndReason, opts: { exit: boolean }): Promise<void>;
  nodeInfo(): { node: LookupNode | null; config: LookupConfig | null };
  setNodeInfo(info: { node: LookupNode; config: LookupConfig }): void;
  readonly standalone: boolean;
  /** The file the agent logs to (for log.collect_system_logs). */
  readonly logFile: string | null;
  /** Where rescue.finalize_rescue writes etc/shadow outside the ramdisk (ipa-rescue-root). */
  readonly rescueRoot?: string | null;
}

/** The stand-in when no agent runs (tests driving an executor alone): refuses what needs a running agent. */
export const NO_AGENT: AgentLifecycle = {
  stopServing: () => Promise.reject(new Error('no agent is running')),
  nodeInfo: () => ({ node: null, config: null }),
  setNodeInfo: () => {
    throw new Error('no agent is running');
  },
  standalone: false,
  logFile: null,
};
