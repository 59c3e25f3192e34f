/**
 * Image download/write settings (IPA's image_download_* options). Defaults are IPA's; the agent's start-up
 * copies its TLS settings in (setImageSettings), tests shrink the timeouts.
 */
export interface ImageSettings {
  /** Connect and per-read idle timeout (IPA image_download_connection_timeout, 60 s). */
  connectionTimeoutMs: number;
  /** Retries of one URL on connection errors / 5xx / dropped connections (IPA: 9). */
  connectionRetries: number;
  retryIntervalMs: number;
  /** Whole-download limit; 0 = none (IPA image_download_max_duration). */
  maxDurationMs: number;
  insecure: boolean;
  cafile: string | null;
  certfile: string | null;
  keyfile: string | null;
  /** Accept a 32-hex md5 legacy checksum (IPA md5_enabled). */
  md5Enabled: boolean;
  /** Formats the agent writes (IPA permitted_image_formats). */
  permittedFormats: string[];
  /** Un-mapped qcow2 data held while waiting for its L2 table (see qcow2.ts). */
  qcow2PendingLimitBytes: number;
  /** Allow grub-install for BIOS partition images (IPA enable_bios_bootloader_install; Ironic pushes it). */
  enableBiosBootloaderInstall: boolean;
  /** ESP size for partition images in UEFI mode (IPA efi_system_partition_size). */
  efiSystemPartitionMb: number;
  /** Largest firmware image update_firmware downloads (ipa-firmware-max-bytes). */
  firmwareMaxBytes: number;
  /** Redirects followed per request (image, checksum file, firmware). */
  maxRedirects: number;
  /** Hash downloads in a worker thread: 'auto' = for the algorithms without hardware help (hasher.ts says why). */
  hashInWorker: boolean | 'auto';
}

const defaults: ImageSettings = {
  connectionTimeoutMs: 60_000,
  connectionRetries: 9,
  retryIntervalMs: 10_000,
  maxDurationMs: 0,
  insecure: false,
  cafile: null,
  certfile: null,
  keyfile: null,
  md5Enabled: true,
  permittedFormats: ['raw', 'gpt', 'qcow2'],
  qcow2PendingLimitBytes: 64 * 1024 * 1024,
  enableBiosBootloaderInstall: true,
  efiSystemPartitionMb: 550,
  firmwareMaxBytes: 1024 * 1024 * 1024,
  maxRedirects: 5,
  hashInWorker: 'auto',
};

let current: ImageSettings = { ...defaults };

export function imageSettings(): Readonly<ImageSettings> {
  return current;
}

export function setImageSettings(update: Partial<ImageSettings>): void {
  current = { ...current, ...update };
}

export function resetImageSettings(): void {
  current = { ...defaults };
}
