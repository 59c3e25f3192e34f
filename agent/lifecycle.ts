/**
 * What extensions may ask of the running agent: its node (from lookup), and to stop serving (power-off, reboot,
 * lockdown). Set by main.ts when the agent starts; extensions read it at call time, so they hold no agent state.
 */
import type { LookupConfig, LookupNode } from '../protocol/lookup.js';

export type EndReason = 'power_off' | 'reboot' | 'lockdown';

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
}

let current: AgentLifecycle | null = null;

export function setLifecycle(l: AgentLifecycle | null): void {
  current = l;
}

/** The running agent's hooks; a stand-in that refuses everything when no agent is running (unit tests). */
export function lifecycle(): AgentLifecycle {
  if (current) return current;
  return {
    stopServing: () => Promise.reject(new Error('no agent is running')),
    nodeInfo: () => ({ node: null, config: null }),
    setNodeInfo: () => {
      throw new Error('no agent is running');
    },
    standalone: false,
    logFile: null,
  };
}
