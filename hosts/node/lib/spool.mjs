/**
 * A stream's records by key, in bounded memory, given back in key order.
 *
 * `read` prints a stream as `connector-host export` does: each record once
 * (the last page that returned it wins, a tombstone removes it), keys in
 * byte order. Holding the whole stream for that took 0.44 GiB at 100,000
 * devices and grew with the stream. A spool holds at most about
 * `bufferBytes` of records; past that it sorts what it holds into a
 * temporary file (a *run*) and starts again. Reading back merges the runs
 * and what is still in memory, the newest entry of a key winning. A stream
 * that fits in the buffer never touches the disk; past `maxRuns` runs, the
 * runs are merged into one.
 *
 * A run is created owner-only under the system's temporary directory
 * (`TMPDIR`) and unlinked at once: it lives only as an open descriptor, so
 * nothing is left behind however the process ends (even SIGKILL), and no
 * signal handler holds up a stop.
 *
 * ```js
 * const spool = new KeyedSpool({ bufferBytes: 64 << 20 });
 * try {
 *   spool.set('b', '{"id":"b"}');
 *   spool.set('a', '{"id":"a"}');
 *   spool.delete('b');
 *   for (const text of spool.inKeyOrder()) console.log(text); // {"id":"a"}
 * } finally {
 *   spool.close();
 * }
 * ```
 *
 * @module spool
 */

import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { EXIT_OTHER, Failure } from './failure.mjs';

/** What a buffered entry costs besides its strings' characters (a guess at V8's map entry and headers). */
const ENTRY_OVERHEAD_BYTES = 96;

/** Lines written to a run per `write` call. */
const LINES_PER_WRITE = 1000;

/** Runs kept before they are merged into one (each holds a descriptor open). */
const MAX_RUNS = 64;

/** Records by key, spilled to sorted temporary files past a memory budget. */
export class KeyedSpool {
  /**
   * @param {object} options
   * @param {number} options.bufferBytes records held in memory before they are written to a run
   * @param {string} [options.parentDir] where runs are created (the system's temporary directory)
   * @param {number} [options.maxRuns] runs kept before they are merged into one
   */
  constructor({ bufferBytes, parentDir = tmpdir(), maxRuns = MAX_RUNS }) {
    /** @type {Map<string, string|null>} key → record text, or null for a tombstone */
    this.buffer = new Map();
    this.bufferedBytes = 0;
    this.bufferBytes = bufferBytes;
    this.parentDir = parentDir;
    this.maxRuns = Math.max(2, maxRuns);
    /** @type {RunFile[]} the runs, oldest first */
    this.runs = [];
    /** Runs written so far, merged ones included. */
    this.runsWritten = 0;
  }

  /** Keeps `text` as the record of `key`, replacing what an earlier page gave (as `Map#set`). */
  set(key, text) {
    this.hold(key, text);
  }

  /** Forgets the record of `key`, whether it was put before or not. */
  delete(key) {
    this.hold(key, null);
  }

  /** How many runs were written to disk so far (merged ones included). */
  get runCount() {
    return this.runsWritten;
  }

  /**
   * The records' texts, keys in byte order (as SQLite's `ORDER BY key`),
   * each key's newest record once, deleted keys left out. The runs are
   * read synchronously, a megabyte at a time.
   *
   * @returns {Generator<string>}
   */
  *inKeyOrder() {
    const sources = this.runs.map((run) => new RunReader(run));
    // The buffer is the newest source: a later source wins a key.
    sources.push(new ArraySource(sortedEntries(this.buffer)));
    for (const [, text] of mergeNewestWins(sources)) {
      if (text !== null) yield text;
    }
  }

  /** Closes the runs (which frees their space). Safe to call more than once. */
  close() {
    for (const run of this.runs) run.close();
    this.runs = [];
  }

  /** Buffers one entry; writes a run when the buffer is over budget. */
  hold(key, text) {
    const previous = this.buffer.get(key);
    if (previous !== undefined) this.bufferedBytes -= entryBytes(key, previous);
    this.buffer.set(key, text);
    this.bufferedBytes += entryBytes(key, text);
    if (this.bufferedBytes > this.bufferBytes) this.spill();
  }

  /** Writes the buffer, sorted, as the newest run, and empties it; merges the runs past `maxRuns`. */
  spill() {
    try {
      this.runs.push(this.writeRun(sortedEntries(this.buffer)));
      if (this.runs.length >= this.maxRuns) this.compact();
    } catch (e) {
      throw new Failure(
        EXIT_OTHER,
        `cannot sort the stream through a temporary file under ${this.parentDir} (${e.message}): free space there, set TMPDIR to a directory with room, or hold more of the stream in memory (--buffer-mib)`,
      );
    }
    this.buffer = new Map();
    this.bufferedBytes = 0;
  }

  /**
   * Merges every run into one. Tombstones are dropped: what they delete
   * can only be in the runs merged, all older than them.
   */
  compact() {
    const merged = mergeNewestWins(this.runs.map((run) => new RunReader(run)));
    const run = this.writeRun(withoutTombstones(merged));
    this.close();
    this.runs = [run];
  }

  /** A new run holding `entries` (in key order). */
  writeRun(entries) {
    const run = RunFile.create(this.parentDir);
    try {
      const lines = [];
      for (const entry of entries) {
        lines.push(runLine(entry));
        if (lines.length === LINES_PER_WRITE) {
          run.append(`${lines.join('\n')}\n`);
          lines.length = 0;
        }
      }
      if (lines.length > 0) run.append(`${lines.join('\n')}\n`);
    } catch (e) {
      run.close();
      throw e;
    }
    this.runsWritten += 1;
    return run;
  }
}

/** The entries that are records, not tombstones. */
function* withoutTombstones(entries) {
  for (const entry of entries) {
    if (entry[1] !== null) yield entry;
  }
}

/** A temporary file that exists only as an open descriptor. */
class RunFile {
  /** An owner-only file with a random name in `dir`, unlinked at once. */
  static create(dir) {
    const path = join(dir, `connector-node-run-${randomBytes(12).toString('hex')}`);
    // `wx+`: read and write, and never an existing file or a link placed there.
    const fd = openSync(path, 'wx+', 0o600);
    try {
      unlinkSync(path);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return new RunFile(fd);
  }

  constructor(fd) {
    /** @type {number|null} */
    this.fd = fd;
    this.size = 0;
  }

  /** Writes `text` at the end, whole. */
  append(text) {
    const bytes = Buffer.from(text, 'utf8');
    let written = 0;
    while (written < bytes.length) {
      written += writeSync(this.fd, bytes, written, bytes.length - written, this.size + written);
    }
    this.size += bytes.length;
  }

  /** Closes the descriptor, which frees the file's space. */
  close() {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}

/** What an entry is counted as against the budget. */
function entryBytes(key, text) {
  return ENTRY_OVERHEAD_BYTES + key.length + (text === null ? 0 : text.length);
}

/**
 * The map's entries, keys in the byte order of their UTF-8, as SQLite's
 * `BINARY` collation compares them (JavaScript's `<` compares UTF-16
 * units, which puts U+E000–U+FFFF after the characters beyond U+FFFF).
 */
function sortedEntries(map) {
  const entries = [...map.entries()].map((entry) => [Buffer.from(entry[0], 'utf8'), entry]);
  entries.sort((a, b) => Buffer.compare(a[0], b[0]));
  return entries.map((pair) => pair[1]);
}

/**
 * An entry as a line of a run: the key as a JSON string, a tab, then the
 * record's text as it is (what nearly every record is: JSON of one line,
 * an object), as a JSON string if it holds a line break or could be
 * mistaken for one, or nothing for a tombstone.
 */
function runLine([key, text]) {
  if (text === null) return `${JSON.stringify(key)}\t`;
  const plain = !text.startsWith('"') && !/[\n\r]/.test(text);
  return `${JSON.stringify(key)}\t${plain ? text : JSON.stringify(text)}`;
}

/** The entry a run's line holds ([`runLine`]'s inverse). */
function runEntry(line) {
  // A JSON string has no raw tab: the first one ends the key.
  const tab = line.indexOf('\t');
  const key = JSON.parse(line.slice(0, tab));
  const value = line.slice(tab + 1);
  if (value === '') return [key, null];
  return [key, value.startsWith('"') ? JSON.parse(value) : value];
}

/** Bytes read from a run at a time. */
const READ_CHUNK_BYTES = 1 << 20;

/** A run's entries, read back from its start a chunk at a time. */
class RunReader {
  constructor(run) {
    this.run = run;
    this.position = 0;
    this.chunk = Buffer.alloc(Math.min(READ_CHUNK_BYTES, Math.max(run.size, 1)));
    this.decoder = new StringDecoder('utf8');
    /** The text after the last whole line read. */
    this.rest = '';
  }

  /** The next entries, in order, or null at the run's end. */
  nextBatch() {
    while (this.position < this.run.size) {
      const read = readSync(this.run.fd, this.chunk, 0, this.chunk.length, this.position);
      if (read === 0) break;
      this.position += read;
      const lines = (this.rest + this.decoder.write(this.chunk.subarray(0, read))).split('\n');
      this.rest = lines.pop();
      if (lines.length > 0) return lines.map(runEntry);
    }
    // Every line ends with a newline, so nothing is left after the last.
    return null;
  }
}

/** Entries already in memory, handed over as one batch. */
class ArraySource {
  constructor(entries) {
    this.entries = entries;
  }

  nextBatch() {
    const entries = this.entries;
    this.entries = null;
    return entries !== null && entries.length > 0 ? entries : null;
  }
}

/**
 * Merges sources of `[key, value]` entries (each with `nextBatch()`, in
 * key byte order, each key at most once) into one in key byte order with
 * each key once: the value of the latest source holding it.
 *
 * @param {{nextBatch: () => Array<[string, any]>|null}[]} sources oldest first
 * @returns {Generator<[string, any]>}
 */
export function* mergeNewestWins(sources) {
  const heads = new HeadHeap();
  sources.forEach((source, index) => heads.pushNext({ source, index, batch: null, at: 0 }));
  while (heads.size > 0) {
    // The newest source's entry of the smallest key comes first.
    const newest = heads.pop();
    const entry = newest.batch[newest.at];
    const key = newest.bytes;
    heads.pushNext(newest);
    while (heads.size > 0 && Buffer.compare(heads.top.bytes, key) === 0) {
      heads.pushNext(heads.pop());
    }
    yield entry;
  }
}

/** Sources' cursors, the smallest key first, the newest source first among equal keys. */
class HeadHeap {
  constructor() {
    this.items = [];
  }

  get size() {
    return this.items.length;
  }

  get top() {
    return this.items[0];
  }

  /** Moves `cursor` to its source's next entry and pushes it, unless the source has ended. */
  pushNext(cursor) {
    if (cursor.batch !== null) cursor.at += 1;
    if (cursor.batch === null || cursor.at >= cursor.batch.length) {
      cursor.batch = cursor.source.nextBatch();
      cursor.at = 0;
      if (cursor.batch === null) return;
    }
    cursor.bytes = Buffer.from(cursor.batch[cursor.at][0], 'utf8');
    const items = this.items;
    items.push(cursor);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  /** Takes the first cursor off. */
  pop() {
    const items = this.items;
    const first = items[0];
    const last = items.pop();
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < items.length && before(items[left], items[smallest])) smallest = left;
        if (right < items.length && before(items[right], items[smallest])) smallest = right;
        if (smallest === i) break;
        [items[i], items[smallest]] = [items[smallest], items[i]];
        i = smallest;
      }
    }
    return first;
  }
}

/** Whether cursor `a` comes before `b`: a smaller key, or the same key from a newer source. */
function before(a, b) {
  const order = Buffer.compare(a.bytes, b.bytes);
  return order < 0 || (order === 0 && a.index > b.index);
}
