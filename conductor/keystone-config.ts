/**
 * `auth.keystone`: what the conductor needs to validate Keystone tokens the way keystonemiddleware's auth_token
 * does for Ironic ([keystone_authtoken] auth_url, username, password, project_name, ... and the token cache), plus
 * the two policy settings Ironic reads ([DEFAULT]service_project_name, [oslo_policy]enforce_new_defaults).
 */
import { z } from 'zod';

export const keystoneAuthSchema = z.object({
  /** Keystone's identity endpoint, e.g. http://127.0.0.1:5000/v3 (a URL without /v3 gets it appended). */
  auth_url: z.string().url(),
  /** The conductor's own service user, which asks Keystone to validate each user token (GET /v3/auth/tokens). */
  username: z.string().min(1),
  password: z.string().min(1),
  project_name: z.string().min(1).default('service'),
  user_domain_id: z.string().min(1).default('default'),
  project_domain_id: z.string().min(1).default('default'),
  /** Seconds a validated token is trusted without asking Keystone again (never past its expires_at). */
  token_cache_time: z.number().int().min(0).max(86_400).default(300),
  /** Tokens kept in the cache at most (the oldest are dropped first). */
  token_cache_size: z.number().int().min(1).max(1_000_000).default(10_000),
  /** Milliseconds to wait for Keystone before the request fails with 503. */
  timeout_ms: z.number().int().positive().default(10_000),
  /** Announced in WWW-Authenticate on 401 (default: auth_url), as keystonemiddleware's www_authenticate_uri. */
  www_authenticate_uri: z.string().url().optional(),
  /** Ironic's [DEFAULT]service_project_name: `service` role in this project is the service_role rule. */
  service_project_name: z.string().default('service'),
  /**
   * oslo.policy's enforce_new_defaults: false (Ironic 21.4's default) also accepts the deprecated pre-RBAC rules,
   * notably `role:admin` in any project having full access; true applies only the scoped defaults.
   */
  enforce_new_defaults: z.boolean().default(false),
});

export type KeystoneAuthConfig = z.infer<typeof keystoneAuthSchema>;
