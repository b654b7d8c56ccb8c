/**
 * Reading one stream to its end: every partition, page after page,
 * following the component's cursors, retrying `rate-limited` and
 * `temporarily-unavailable` as the contract says (the server's
 * `Retry-After` when given, else a jittered exponential back-off), and
 * keeping each record once, by key (the last page that returned it wins).
 * The same decisions as `connector-host`'s `engine/src/sync/retry.rs`.
 *
 * @module read
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT_CONFIG, EXIT_OTHER, EXIT_TEMPORARY, Failure } from './failure.mjs';

/** The `connector-error` cases a later attempt may get past. */
const TEMPORARY = new Set(['rate-limited', 'temporarily-unavailable']);

/**
 * What to do after the `attempt`-th failed read (0 for the first): wait
 * `waitMs` and read the same page again, or `null` to give up.
 *
 * @param {object} sync the `[sync]` table
 * @param {{tag: string, val: any}} error the `connector-error`
 * @param {number} attempt
 * @param {() => number} random in [0, 1), for the jitter
 * @returns {{waitMs: number, serverAsked: boolean}|null}
 */
export function decide(sync, error, attempt, random = Math.random) {
  if (attempt + 1 >= sync.max_attempts) return null;
  if (error.tag === 'rate-limited') {
    const seconds = error.val.retryAfterSeconds;
    if (seconds == null) return { waitMs: backoffMs(sync, attempt, random), serverAsked: false };
    if (seconds > sync.max_retry_after_seconds) return null;
    return { waitMs: seconds * 1000, serverAsked: true };
  }
  if (error.tag === 'temporarily-unavailable') {
    return { waitMs: backoffMs(sync, attempt, random), serverAsked: false };
  }
  return null;
}

/** Full jitter between half the exponential delay and the delay. */
function backoffMs(sync, attempt, random) {
  const exp = Math.min(sync.retry_base_ms * 2 ** Math.min(attempt, 16), sync.retry_max_ms);
  const low = Math.floor(exp / 2);
  return low + Math.floor(random() * (Math.max(exp, 1) - low + 1));
}

/** The message of any `connector-error` case. */
export function errorMessage(error) {
  return error.tag === 'rate-limited' ? error.val.message : String(error.val);
}

/**
 * A record's key as `connector-host` stores it: a JSON string's text, or an
 * integer's decimal digits.
 *
 * @returns {string|undefined}
 */
export function recordKey(record, keyField) {
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return undefined;
  const value = record[keyField];
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (Number.isSafeInteger(value)) return String(value);
  return undefined;
}

/**
 * Reads every partition of `stream` into `records` (JSON text by key).
 *
 * @param {object} options
 * @param {object} options.source the component's `source` exports
 * @param {[string, string][]} options.settings
 * @param {{name: string, keyField: string}} options.stream
 * @param {object} options.sync the `[sync]` table
 * @param {(level: string, message: string) => void} options.log
 * @param {() => string} options.stderrTail the guest's stderr, for traps
 * @param {{set: (key: string, text: string) => void, delete: (key: string) => void}} options.records
 *   where the records go: a `Map`, or a `KeyedSpool` (lib/spool.mjs) to bound memory
 * @returns {Promise<{pages: number, retries: number}>}
 */
export async function readStream({ source, settings, stream, sync, log, stderrTail, records }) {
  const totals = { pages: 0, retries: 0 };
  const count = sync.partitions;
  for (let index = 0; index < count; index++) {
    let cursor;
    for (;;) {
      const request = {
        streamName: stream.name,
        partition: { index, count },
        cursor,
        watermark: undefined,
        deletionsSince: undefined,
        pageSize: sync.page_size,
      };
      const page = await readWithRetries({ source, settings, request, sync, log, stderrTail, totals });
      totals.pages += 1;
      keep(page, stream, records);
      if (page.nextCursor == null) break;
      if (page.nextCursor === cursor) {
        throw new Failure(EXIT_OTHER, `the read of \`${stream.name}\` did not complete: the component returned the cursor it was given (partition ${index}); it would read the same page forever`);
      }
      cursor = page.nextCursor;
    }
  }
  return totals;
}

/** Adds a page's records by key; a tombstone removes its record. */
function keep(page, stream, records) {
  for (const text of page.records) {
    let key;
    try {
      key = recordKey(JSON.parse(text), stream.keyField);
    } catch {
      throw new Failure(EXIT_OTHER, `the component returned a record of \`${stream.name}\` that is not JSON`);
    }
    if (key === undefined) {
      throw new Failure(EXIT_OTHER, `the component returned a record of \`${stream.name}\` without its key field \`${stream.keyField}\` (a string or an integer)`);
    }
    records.set(key, text);
  }
  for (const tombstone of page.deleted) records.delete(tombstone.key);
}

/** One page, retried as the error's case says. */
async function readWithRetries({ source, settings, request, sync, log, stderrTail, totals }) {
  for (let attempt = 0; ; attempt++) {
    let error;
    try {
      return source.read(settings, request);
    } catch (e) {
      error = connectorError(e, stderrTail);
    }
    const next = decide(sync, error, attempt);
    if (!next) throw giveUp(request.streamName, error, attempt);
    totals.retries += 1;
    log('info', `retrying \`${request.streamName}\` partition ${request.partition.index} in ${next.waitMs} ms: ${error.tag}: ${errorMessage(error)}`);
    await sleep(next.waitMs);
  }
}

/** The `connector-error` a call threw; a trap becomes a failure at once. */
function connectorError(e, stderrTail) {
  // jco throws the `err` case itself (or, wrapped, a ComponentError carrying it).
  const error = e instanceof Error ? e.payload : e;
  if (typeof error?.tag === 'string' && 'val' in error) return error;
  const tail = stderrTail().trim().split('\n').slice(-5).join(' | ');
  throw new Failure(
    EXIT_OTHER,
    `the component failed (trap): ${e?.message ?? e}${tail ? `; its stderr ends: ${tail}` : ''}. This is a defect of the connector; report it to its authors with this message`,
  );
}

/** The failure after an error the host does not retry (any longer). */
function giveUp(stream, error, attempt) {
  const attempts = attempt > 0 ? `gave up after ${attempt + 1} attempts: ` : '';
  const exitCode = TEMPORARY.has(error.tag) ? EXIT_TEMPORARY : error.tag === 'invalid-settings' ? EXIT_CONFIG : EXIT_OTHER;
  return new Failure(exitCode, `the read of \`${stream}\` did not complete: ${error.tag}: ${attempts}${errorMessage(error)}`);
}
