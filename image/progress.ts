/** Progress of a long image operation: into the running command's result and the log, at most once a second. */
import { getLogger } from '../common/logger.js';

const log = getLogger('image-progress');

export type ProgressFn = (update: Record<string, unknown>) => void;

export class Progress {
  private last = 0;
  private phaseStart = Date.now();
  private phase = 'starting';
  downloaded = 0;
  written = 0;
  total: number | null = null;

  constructor(
    private readonly report: ProgressFn | undefined,
    private readonly imageId: string,
  ) {}

  setPhase(phase: string): void {
    this.phase = phase;
    this.phaseStart = Date.now();
    this.emit(true);
  }

  tick(): void {
    const now = Date.now();
    if (now - this.last >= 1000) this.emit(false, now);
  }

  emit(force: boolean, now = Date.now()): void {
    if (!force && now - this.last < 1000) return;
    this.last = now;
    const secs = Math.max((now - this.phaseStart) / 1000, 0.001);
    const update = {
      phase: this.phase,
      image_id: this.imageId,
      bytes_downloaded: this.downloaded,
      bytes_written: this.written,
      total_bytes: this.total,
      rate_mib_s: Math.round((this.downloaded / 1048576 / secs) * 10) / 10,
    };
    this.report?.(update);
    log.info(update, 'image progress');
  }
}
