/**
 * The agent command API's wire types and error catalogue (IPA-compatible).
 * Imported by the agent's server and by the conductor's agent client: defined here only.
 */
import { z } from 'zod';
import { BaremetalError, errorMessage } from '../common/errors.js';

/** Reported as agent_version in heartbeats: IPA-like semver so Ironic's feature checks pass. */
export const AGENT_VERSION = '11.1.0';

export type CommandStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CLEAN_VERSION_MISMATCH';

/** IPA's serialized error: exactly these four keys inside command_error. */
export interface SerializedError {
  type: string;
  code: number;
  message: string;
  details: string;
}

export interface CommandResult {
  id: string;
  command_name: string;
  command_status: CommandStatus;
  command_error: SerializedError | { error: string } | null;
  command_result: Record<string, unknown> | null;
}

export interface CommandList {
  commands: CommandResult[];
}

/** WSME-style HTTP error body every ≥400 response of the agent carries. */
export interface FaultBody {
  faultcode: 'Client' | 'Server';
  faultstring: string;
}

export const CommandRequestSchema = z.object({
  name: z.string().min(1),
  params: z.record(z.string(), z.unknown()),
});
export type CommandRequest = z.infer<typeof CommandRequestSchema>;

/** A step as agents report them. */
export interface AgentStep {
  step: string;
  priority: number;
  interface: string;
  reboot_requested: boolean;
  abortable?: boolean;
  argsinfo?: Record<string, { description: string; required?: boolean }> | null;
  requires_ramdisk?: boolean;
}

/** get_clean_steps / get_deploy_steps / get_service_steps command_result. */
export interface StepsResult {
  clean_steps?: Record<string, AgentStep[]>;
  deploy_steps?: Record<string, AgentStep[]>;
  service_steps?: Record<string, AgentStep[]>;
  hardware_manager_version: Record<string, string>;
}

/**
 * IPA's RESTError: `type` is the class name, `code` the status, `message` the class summary, `details` the
 * instance text. str() is "message: details", which is what HTTP-level faultstrings show.
 */
export class AgentError extends BaremetalError {
  readonly summary: string;
  constructor(type: string, code: number, summary: string, details?: string, cause?: unknown) {
    super(`${summary}: ${details ?? summary}`, { code: type, status: code, details: details ?? summary, cause });
    this.summary = summary;
  }
  serialize(): SerializedError {
    return { type: this.code, code: this.status, message: this.summary, details: this.details };
  }
}

const mk = (type: string, code: number, summary: string) =>
  class extends AgentError {
    constructor(details?: string, cause?: unknown) {
      super(type, code, summary, details, cause);
    }
  };

export const InvalidContentError = mk('InvalidContentError', 400, 'Invalid request body');
export const InvalidCommandError = mk('InvalidCommandError', 400, 'Invalid command');
export const InvalidCommandParamsError = mk('InvalidCommandParamsError', 400, 'Invalid command parameters');
export const NotFoundError = mk('NotFound', 404, 'Not found');
export const RequestedObjectNotFoundError = mk('RequestedObjectNotFoundError', 404, 'Not found');
export const DeviceNotFound = mk('DeviceNotFound', 404, 'Error finding the disk or partition device to deploy the image onto');
export const CommandExecutionError = mk('CommandExecutionError', 500, 'Command execution failed');
export const AgentIsBusy = mk('AgentIsBusy', 409, 'Agent is busy');
export const TokenInvalid = mk('Unauthorized', 401, '401 Unauthorized');
export const ImageDownloadError = mk('ImageDownloadError', 500, 'Error downloading image');
export const ImageDownloadFatalError = mk('ImageDownloadFatalError', 500, 'Error downloading image');
export const ImageDownloadOutofSpaceError = mk('ImageDownloadOutofSpaceError', 500, 'Error downloading image');
export const ImageDownloadTimeoutError = mk('ImageDownloadTimeoutError', 408, 'Image download timeout');
export const ImageChecksumError = mk('ImageChecksumError', 500, 'Error verifying image checksum');
export const ImageWriteError = mk('ImageWriteError', 500, 'Error writing image to device');
export const InvalidImage = mk('InvalidImage', 500, 'The provided image is not valid for use');
export const SystemRebootError = mk('SystemRebootError', 500, 'Error rebooting system');
export const BlockDeviceEraseError = mk('BlockDeviceEraseError', 500, 'Error erasing block device');
export const BlockDeviceError = mk('BlockDeviceError', 500, 'Block device caused unknown error');
export const SoftwareRAIDError = mk('SoftwareRAIDError', 500, 'Software RAID caused unknown error');
export const HardwareManagerNotFound = mk('HardwareManagerNotFound', 500, 'No valid HardwareManager found');
export const HardwareManagerMethodNotFound = mk('HardwareManagerMethodNotFound', 500, 'No HardwareManager found to handle method');
export const HardwareManagerConfigurationError = mk('HardwareManagerConfigurationError', 500, 'Hardware manager configuration error');
export const IncompatibleHardwareMethodError = mk('IncompatibleHardwareMethodError', 500, 'HardwareManager method is not compatible with hardware');
export const VersionMismatch = mk('VersionMismatch', 409, 'Hardware managers version mismatch, reload agent with correct version');
export const CleaningError = mk('CleaningError', 500, 'Clean step failed');
export const ProtectedDeviceError = mk('ProtectedDeviceError', 500, 'Protected device');
export const DeploymentError = mk('DeploymentError', 500, 'Deploy step failed');
export const NotImplementedCommand = mk('NotImplementedError', 501, 'Command not implemented');
export const LookupNodeError = mk('LookupNodeError', 500, 'Error getting configuration from Ironic');
export const HeartbeatError = mk('HeartbeatError', 500, 'Error heartbeating to agent API');
export const HeartbeatConflictError = mk('HeartbeatConflictError', 500, 'ConflictError heartbeating to agent API');
export const HeartbeatConnectionError = mk(
  'HeartbeatConnectionError',
  500,
  'Error attempting to heartbeat - Possible transitory network failure or blocking port may be present.',
);
export const LookupAgentIPError = mk('LookupAgentIPError', 500, 'Error finding IP for Ironic Agent');

/** Any thrown value → IPA's four-key error (non-agent errors become CommandExecutionError). */
export function serializeError(err: unknown): SerializedError {
  if (err instanceof AgentError) return err.serialize();
  const details = errorMessage(err);
  return { type: 'CommandExecutionError', code: 500, message: 'Command execution failed', details };
}

export function faultBody(status: number, faultstring: string): FaultBody {
  return { faultcode: status >= 500 ? 'Server' : 'Client', faultstring };
}
