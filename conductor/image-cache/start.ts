/** The conductor's image cache from its configuration (one per conductor, kept in its context). */
import { join, resolve } from 'node:path';
import type { BootServer } from '../boot-server.js';
import type { ConductorConfig } from '../config.js';
import type { Store } from '../store/types.js';
import { ConductorImageCache } from './node-images.js';

export function startImageCache(config: ConductorConfig, store: Store, bootServer: BootServer | undefined):
  Promise<ConductorImageCache> {
  const c = config.image_cache;
  return ConductorImageCache.start({
    root: resolve(c.master_path ?? join(config.data_dir, 'image-cache')),
    sizeMib: c.size_mib, ttlMinutes: c.ttl_minutes, downloadTimeoutS: c.download_timeout, sweepIntervalS: c.sweep_interval,
    allowLoopback: config.deploy.image_cache_allow_loopback,
    listenHost: c.listen_host, listenPort: c.listen_port, httpUrl: c.http_url,
  }, store, bootServer);
}
