/**
 * Ironic's exception classes as we need them: the class name is the faultcode-ish `code`, `status` the HTTP
 * status. The API turns any of these into Ironic's error body in one place (conductor/api/errors).
 */
import { BaremetalError } from '../common/errors.js';

export class IronicError extends BaremetalError {
  constructor(message: string, status = 500, code?: string, cause?: unknown) {
    super(message, { status, code: code ?? new.target.name, cause });
  }
}

export class InvalidParameterValue extends IronicError {
  constructor(message: string) { super(message, 400); }
}
export class MissingParameterValue extends IronicError {
  constructor(message: string) { super(message, 400); }
}
export class InvalidState extends IronicError {
  constructor(message: string) { super(message, 400); }
}
export class InvalidStateRequested extends IronicError {
  constructor(message: string) { super(message, 400); }
}
export class NotFound extends IronicError {
  constructor(message: string) { super(message, 404); }
}
export class NodeNotFound extends IronicError {
  constructor(node: string) { super(`Node ${node} could not be found.`, 404); }
}
export class NodeLocked extends IronicError {
  constructor(node: string, host: string) {
    super(`Node ${node} is locked by host ${host}, please retry after the current operation is completed.`, 409);
  }
}
export class Conflict extends IronicError {
  constructor(message: string) { super(message, 409); }
}
/** A BMC operation failed (unreachable, bad credentials, refused): lands in last_error. */
export class PowerStateFailure extends IronicError {
  constructor(message: string, cause?: unknown) { super(message, 500, 'PowerStateFailure', cause); }
}
export class DriverOperationError extends IronicError {
  constructor(message: string, cause?: unknown) { super(message, 500, 'DriverOperationError', cause); }
}
export class AgentConnectionFailed extends IronicError {
  constructor(message: string, cause?: unknown) { super(message, 500, 'AgentConnectionFailed', cause); }
}
