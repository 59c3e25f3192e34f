/**
 * Everything the demo starts registers its undo here; run() undoes in reverse order exactly once, on success,
 * failure and Ctrl-C alike, and a failing undo never stops the others.
 */
import { errorMessage } from '../../common/errors.js';

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
