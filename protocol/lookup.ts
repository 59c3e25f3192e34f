/**
 * Lookup and heartbeat wire types.
 * Imported by the conductor's API and by the agent's conductor client: defined here only.
 */
import { z } from 'zod';

/** Minimum microversions the agent needs for each feature. */
export const AGENT_TOKEN_VERSION = '1.62';
export const AGENT_VERIFY_CA_VERSION = '1.68';
export const AGENT_STATUS_VERSION = '1.72';

/** The token Ironic returns on lookups after the first one. */
export const MASKED_TOKEN = '******';

export interface LookupConfig {
  heartbeat_timeout: number;
  agent_token?: string;
  agent_token_required?: boolean;
  agent_md5_checksum_enable?: boolean;
  permitted_image_formats?: string[];
  agent_skip_bmc_detect?: boolean;
  [key: string]: unknown;
}

export interface LookupNode {
  uuid: string;
  properties: Record<string, unknown>;
  instance_info: Record<string, unknown>;
  driver_internal_info: Record<string, unknown>;
  links?: unknown[];
  [key: string]: unknown;
}

export interface LookupResponse {
  node: LookupNode;
  config: LookupConfig;
}

export const HeartbeatBodySchema = z.object({
  callback_url: z.string().min(1),
  agent_token: z.string().nullish(),
  agent_version: z.string().nullish(),
  agent_verify_ca: z.string().nullish(),
  agent_status: z.enum(['start', 'end', 'error']).nullish(),
  agent_status_message: z.string().nullish(),
});
export type HeartbeatBody = z.infer<typeof HeartbeatBodySchema>;
