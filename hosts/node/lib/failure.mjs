/**
 * How the Node host fails: the exit status a failure deserves (the same as
 * `connector-host`'s) and one paragraph for the operator.
 *
 * @module failure
 */

/** A configuration problem: the operator must change the file, the environment or the arguments. */
export const EXIT_CONFIG = 2;
/** A read that stopped for a reason that passes by itself (EX_TEMPFAIL from sysexits.h). */
export const EXIT_TEMPORARY = 75;
/** Everything else (credentials refused, a broken component, a bad answer). */
export const EXIT_OTHER = 1;

/** A failure with its exit status; `message` is one paragraph that says what to do. */
export class Failure extends Error {
  /**
   * @param {number} exitCode 2, 75 or 1
   * @param {string} message what happened and what to do
   */
  constructor(exitCode, message) {
    super(message);
    this.name = 'Failure';
    this.exitCode = exitCode;
  }
}

/** A configuration problem (exit 2). */
export function configFailure(message) {
  return new Failure(EXIT_CONFIG, message);
}
