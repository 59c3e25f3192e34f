/** Failures of the native IPMI client, classified so callers can tell what to fix and what to retry. */
export type IpmiErrorKind =
  /** Wrong user name or password (RAKP 2 rejected or its HMAC did not verify). */
  | 'auth'
  /** The BMC refused the cipher suite or does not speak IPMI 2.0. */
  | 'cipher'
  /** No (valid) answer within the retry budget. */
  | 'unreachable'
  /** The BMC answered "busy" / out of sessions until the budget ran out. */
  | 'busy'
  /** The BMC executed the command and answered with a non-zero completion code. */
  | 'command'
  /** The client was closed while the call waited. */
  | 'closed';

export class IpmiError extends Error {
  constructor(message: string, readonly kind: IpmiErrorKind, readonly completionCode?: number) {
    super(message);
    this.name = 'IpmiError';
  }
}
