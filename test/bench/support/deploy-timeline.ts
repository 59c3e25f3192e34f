/**
 * Where a deploy's seconds go, for `npm run bench -- deploy`: the states the bench saw through the API and the
 * agent's own events from its JSON log, on one time axis (seconds from the deploy API call), and a summary of the
 * seconds by phase that adds up to the whole deploy.
 */

/** One agent log line (pino JSON): epoch ms, message, and the fields the timeline reads. */
interface AgentLine {
  time: number;
  msg: string;
  step?: string;
  command?: string;
  forced?: boolean;
  phasesMs?: Record<string, number>;
  zeroSkipped?: number;
  syncMs?: number;
  digestMs?: number;
}

/** The agent log messages the timeline shows, with a short label (first occurrence after the API call). */
const EVENTS: Record<string, string> = {
  'agent starting': 'agent process up',
  'lookup succeeded': 'lookup',
  'executing step': 'step',
  'writer open': 'writer open',
  'image format detected': 'first bytes in',
  'download complete': 'last byte in',
  'image written and verified': 'written+verified',
  'prepare_image done': 'write_image done',
  'heartbeat sent': 'heartbeat',
  'command requested': 'command',
};

export interface StateSample {
  /** Seconds from the API call. */
  at: number;
  /** "provision_state step power [agent]" as the bench polls it. */
  phase: string;
}

export interface DeployTimeline {
  /** "0.00 s what" entries, in time order: API-observed states and agent events. */
  entries: string[];
  /** Seconds by phase, in order; they sum to the deploy's seconds. */
  phases: Array<[string, number]>;
  /**
   * Milliseconds from the agent finishing the write_image command to the conductor's first request of the next
   * step (both times from the agent's log, one clock): the heartbeat-to-step latency. Null when not in the log.
   */
  stepDoneToNextMs: number | null;
}

/** " (writes+fsync after the last byte 400 ms, hash 20 ms, 32 MiB of zeros left to the device)" from the log line. */
function writtenDetail(l: AgentLine): string {
  const parts: string[] = [];
  if (l.syncMs !== undefined) parts.push(`writes+fsync after the last byte ${l.syncMs} ms`);
  if (l.digestMs !== undefined) parts.push(`hash ${l.digestMs} ms`);
  if (l.zeroSkipped) parts.push(`${(l.zeroSkipped / 2 ** 20).toFixed(0)} MiB of zeros left to the device`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

export function parseAgentLog(text: string): AgentLine[] {
  const out: AgentLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as AgentLine);
    } catch {
      // a line cut by the agent's exit: not an event
    }
  }
  return out;
}

/**
 * The timeline of one deploy: `startMs` is the epoch ms of the API call, `totalS` the seconds to `active`. The
 * agent's write_image phases (its 'prepare_image done' line) split the step; before it is the conductor's start
 * (and, without fast-track, the ramdisk boot), after it the conductor's remaining steps up to `active`.
 */
export function deployTimeline(lines: AgentLine[], states: StateSample[], startMs: number, totalS: number): DeployTimeline {
  const rel = (ms: number): number => (ms - startMs) / 1000;
  const entries: Array<[number, string]> = states.map((s) => [s.at, s.phase]);
  const seen = new Set<string>();
  let stepAt: number | null = null;
  let done: AgentLine | null = null;
  let commandDoneMs: number | null = null;
  let nextRequestMs: number | null = null;
  for (const l of lines) {
    if (l.time < startMs) continue;
    if (l.msg === 'async command succeeded' && l.command === 'deploy.execute_deploy_step' && done && commandDoneMs === null) {
      commandDoneMs = l.time;
    }
    if (l.msg === 'command requested' && commandDoneMs !== null && nextRequestMs === null) nextRequestMs = l.time;
    const label = EVENTS[l.msg];
    if (!label) continue;
    const what = l.msg === 'executing step' ? `${label} ${l.step ?? ''}`
      : l.msg === 'command requested' ? `${label} ${l.command ?? ''}`
      : l.msg === 'heartbeat sent' ? `${label}${l.forced ? ' (forced)' : ''}`
      : l.msg === 'image written and verified' ? `${label}${writtenDetail(l)}`
      : label;
    if (l.msg === 'executing step' && l.step === 'write_image' && stepAt === null) stepAt = rel(l.time);
    if (l.msg === 'prepare_image done' && !done) done = l;
    // Every heartbeat and command matters (they are the conductor's pace); other events once.
    if (l.msg !== 'heartbeat sent' && l.msg !== 'command requested' && seen.has(what)) continue;
    seen.add(what);
    entries.push([rel(l.time), `agent: ${what}`]);
  }
  entries.sort((a, b) => a[0] - b[0]);
  const phases: Array<[string, number]> = [];
  if (stepAt !== null && done) {
    const doneAt = rel(done.time);
    phases.push(['API call to write_image on the agent', stepAt]);
    let inStep = 0;
    for (const [k, ms] of Object.entries(done.phasesMs ?? {})) {
      phases.push([`write_image: ${k}`, ms / 1000]);
      inStep += ms / 1000;
    }
    // What the phases do not cover (executor hand-off, the step's own start) so the sum stays the whole step.
    phases.push(['write_image: other', Math.max(0, doneAt - stepAt - inStep)]);
    phases.push(['write_image done to active (conductor steps)', totalS - doneAt]);
  } else {
    phases.push(['deploy (no agent write_image phases in the log)', totalS]);
  }
  const stepDoneToNextMs = commandDoneMs !== null && nextRequestMs !== null ? nextRequestMs - commandDoneMs : null;
  return { entries: entries.map(([t, w]) => `${t.toFixed(2)} s ${w}`), phases, stepDoneToNextMs };
}

export function formatPhases(phases: Array<[string, number]>): string {
  return phases.map(([k, s]) => `${k} ${s.toFixed(2)} s`).join(' | ');
}
