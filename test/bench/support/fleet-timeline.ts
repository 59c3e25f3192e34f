/**
 * Where a fleet operation's time goes: the bench samples every node's (provision_state, step) while N nodes
 * work at once and records when each node was first seen in each phase. Per phase: how many nodes went through
 * it, when they entered it (seconds after the API call: median, max) and how long they stayed (until the node's
 * next phase: median, max). Sampling is coarse (the poll interval), so sub-interval phases may be missed.
 */

export interface PhaseSummary {
  phase: string;
  /** Nodes that went through the phase, and how often in all (cleaning re-enters `clean wait` between steps). */
  nodes: number;
  visits: number;
  startMedianS: number;
  startMaxS: number;
  /** Undefined for a node's last phase (the end state). */
  durMedianS: number | undefined;
  durMaxS: number | undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A phase name from a node's fields: the state, and the step when one runs (`wait call-back write_image`). */
export function phaseOf(provisionState: string, step: unknown): string {
  const name = step && typeof step === 'object' && typeof (step as { step?: unknown }).step === 'string'
    ? (step as { step: string }).step : '';
  return name ? `${provisionState} ${name}` : provisionState;
}

export class FleetTimeline {
  private readonly seen = new Map<string, Array<{ phase: string; at: number }>>();

  constructor(private readonly t0: number) {}

  /** A sample: node `node` is in `phase` at `at` (ms). Only a change of phase is recorded. */
  observe(node: string, phase: string, at: number): void {
    const list = this.seen.get(node) ?? [];
    this.seen.set(node, list);
    if (list.at(-1)?.phase !== phase) list.push({ phase, at });
  }

  summary(): PhaseSummary[] {
    const starts = new Map<string, number[]>();
    const nodes = new Map<string, Set<string>>();
    const durs = new Map<string, number[]>();
    for (const [node, list] of this.seen) {
      list.forEach((e, i) => {
        (nodes.get(e.phase) ?? nodes.set(e.phase, new Set()).get(e.phase)!).add(node);
        (starts.get(e.phase) ?? starts.set(e.phase, []).get(e.phase)!).push((e.at - this.t0) / 1000);
        const next = list[i + 1];
        if (next) (durs.get(e.phase) ?? durs.set(e.phase, []).get(e.phase)!).push((next.at - e.at) / 1000);
      });
    }
    const out: PhaseSummary[] = [];
    for (const [phase, s] of starts) {
      const d = durs.get(phase);
      out.push({ phase, nodes: nodes.get(phase)?.size ?? 0, visits: s.length, startMedianS: median(s), startMaxS: Math.max(...s),
        durMedianS: d ? median(d) : undefined, durMaxS: d ? Math.max(...d) : undefined });
    }
    return out.sort((a, b) => a.startMedianS - b.startMedianS);
  }

  /** One line a phase: `  wait call-back write_image  nodes=50 enters at 3.1 s (max 9.0)  lasts 12.0 s (max 20.5)`. */
  format(): string {
    const rows = this.summary();
    const w = Math.max(0, ...rows.map((r) => r.phase.length));
    return rows.map((r) => `  ${r.phase.padEnd(w)}  nodes=${r.nodes}${r.visits > r.nodes ? ` (${r.visits} visits)` : ''} enters at ${r.startMedianS.toFixed(1)} s (max ${r.startMaxS.toFixed(1)})` +
      (r.durMedianS !== undefined ? `  lasts ${r.durMedianS.toFixed(1)} s (max ${(r.durMaxS ?? 0).toFixed(1)})` : '')).join('\n');
  }
}
