/**
 * What the demo shows while it runs: node state and step changes as lines, the image write as a progress bar on
 * a terminal (cli-progress) or as periodic plain lines otherwise, and per-phase timings at the end.
 */
import cliProgress from 'cli-progress';
import type { NodeJson } from './api.js';

export interface Reporter {
  line(text: string): void;
  /** Print node state/step only when it changed since the last call. */
  node(node: NodeJson): void;
  /** Bytes of the image written so far (total when known). */
  bytes(written: number, total: number | undefined): void;
  endBytes(): void;
  close(): void;
}

const mib = (b: number): string => (b / 2 ** 20).toFixed(1);

function stepName(step: Record<string, unknown>): string | undefined {
  if (!step || typeof step.step !== 'string') return undefined;
  return `${typeof step.interface === 'string' ? `${step.interface}.` : ''}${step.step}`;
}

export function createReporter(opts: { tty?: boolean; out?: NodeJS.WriteStream } = {}): Reporter {
  const out = opts.out ?? process.stdout;
  const tty = opts.tty ?? Boolean(out.isTTY);
  const t0 = Date.now();
  const stamp = (): string => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s]`;
  let multi: cliProgress.MultiBar | undefined;
  let bar: cliProgress.SingleBar | undefined;
  let lastKey = '';
  let lastPlain = 0;
  let lastPlainBytes = -1;
  const print = (text: string): void => {
    const l = `${stamp()} ${text}`;
    if (multi) multi.log(`${l}\n`);
    else out.write(`${l}\n`);
  };
  return {
    line: print,
    node(node) {
      const step = stepName(node.deploy_step) ?? stepName(node.clean_step);
      const key = `${node.provision_state}|${node.target_provision_state ?? ''}|${step ?? ''}|${node.power_state ?? ''}`;
      if (key === lastKey) return;
      lastKey = key;
      const target = node.target_provision_state ? ` -> ${node.target_provision_state}` : '';
      print(`node ${node.name ?? node.uuid}: ${node.provision_state}${target}${step ? `, step ${step}` : ''}, ${node.power_state ?? 'power unknown'}`);
    },
    bytes(written, total) {
      if (tty) {
        if (!multi) {
          multi = new cliProgress.MultiBar(
            {
              format: '  image write [{bar}] {percentage}% {written}/{totalMiB} MiB',
              hideCursor: true,
              clearOnComplete: false,
              stream: out,
            },
            cliProgress.Presets.shades_classic,
          );
          bar = multi.create(total ?? written, written, { written: mib(written), totalMiB: total ? mib(total) : '?' });
        }
        if (total) bar?.setTotal(total);
        bar?.update(written, { written: mib(written), totalMiB: total ? mib(total) : '?' });
      } else if (written !== lastPlainBytes && (Date.now() - lastPlain >= 2000 || (total !== undefined && written >= total))) {
        lastPlain = Date.now();
        lastPlainBytes = written;
        print(`image write: ${mib(written)}${total ? ` of ${mib(total)}` : ''} MiB`);
      }
    },
    endBytes() {
      multi?.stop();
      multi = undefined;
      bar = undefined;
      lastPlainBytes = -1;
    },
    close() {
      multi?.stop();
      multi = undefined;
    },
  };
}

/** Named phases with start/end wall times, printed as a table at the end. */
export class PhaseTimer {
  private readonly phases = new Map<string, { start: number; end?: number }>();
  private readonly order: string[] = [];

  start(name: string, at = Date.now()): void {
    if (!this.phases.has(name)) this.order.push(name);
    this.phases.set(name, { start: at });
  }

  end(name: string, at = Date.now()): void {
    const p = this.phases.get(name);
    if (p && p.end === undefined) p.end = at;
  }

  /** Phase names in the order they were first started. */
  names(): string[] {
    return [...this.order];
  }

  has(name: string): boolean {
    return this.phases.has(name);
  }

  ended(name: string): boolean {
    return this.phases.get(name)?.end !== undefined;
  }

  seconds(name: string): number | undefined {
    const p = this.phases.get(name);
    return p?.end === undefined ? undefined : (p.end - p.start) / 1000;
  }

  table(): string {
    const width = Math.max(...this.order.map((n) => n.length), 5);
    return this.order
      .map((n) => {
        const s = this.seconds(n);
        return `  ${n.padEnd(width)}  ${s === undefined ? 'did not finish' : `${s.toFixed(1)} s`}`;
      })
      .join('\n');
  }

  /** `key=value` pairs for a machine-readable last line. */
  figures(): string {
    return this.order
      .map((n) => `${n.replace(/[^a-z0-9]+/gi, '_').toLowerCase()}_s=${this.seconds(n)?.toFixed(1) ?? 'na'}`)
      .join(' ');
  }
}
