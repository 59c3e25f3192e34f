/**
 * Everything the demo starts registers its undo here; run() undoes in reverse order exactly once, on success,
 * failure and Ctrl-C alike, and a failing undo never stops the others.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../common/errors.js';

/** After a demo: keep what explains a failure (serial logs, conductor log and config), drop disks and images. */
export async function pruneWorkDir(dir: string): Promise<void> {
  let kept = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (/serial\.log$|^conductor\.(log|json)$/.test(name)) kept++;
    else await rm(join(dir, name), { recursive: true, force: true });
  }
  if (kept === 0) await rm(dir, { recursive: true, force: true });
}

export class Teardown {
  private readonly steps: Array<{ what: string; undo: () => Promise<void> | void }> = [];
  private running: Promise<string[]> | undefined;

  add(what: string, undo: () => Promise<void> | void): void {
    this.steps.push({ what, undo });
  }

  /** Returns the undo steps that failed ("what: error"). */
  run(): Promise<string[]> {
    this.running ??= (async () => {
      const failed: string[] = [];
      for (const s of this.steps.reverse()) {
        try {
          await s.undo();
        } catch (e) {
          failed.push(`${s.what}: ${errorMessage(e)}`);
        }
      }
      this.steps.length = 0;
      return failed;
    })();
    return this.running;
  }

  /** SIGINT/SIGTERM: tear down, then exit 130/143. Returns a function removing the handlers. */
  onSignals(say: (l: string) => void): () => void {
    const handler = (sig: NodeJS.Signals): void => {
      say(`${sig}: tearing down...`);
      void this.run().then((failed) => {
        for (const f of failed) say(`teardown: ${f}`);
        process.exit(sig === 'SIGINT' ? 130 : 143);
      });
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    return () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    };
  }
}
