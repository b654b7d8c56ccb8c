/**
 * Everything a connector component imports, as the Node host provides it:
 * the contract's `log`, the egress policy's `wasi:http`, and WASI that
 * grants nothing a connector does not need. Like `connector-host`:
 *
 * - no environment variables, no arguments, no working directory;
 * - stdin is empty, stdout is discarded, stderr is kept (its tail explains
 *   a trap);
 * - `exit` ends the call, not the host;
 * - the filesystem has no preopened directory, and TCP, UDP and name lookup
 *   are denied (world `connector-with-runtime`: a language runtime links
 *   them, the host grants nothing through them).
 *
 * @module sandbox
 */

import { cli, clocks, filesystem, io as shimIo, random, sockets } from '@bytecodealliance/preview2-shim';
import { readyPollable } from './egress.mjs';

const ShimOutputStream = shimIo.streams.OutputStream;
const symbolDispose = Symbol.dispose || Symbol.for('dispose');

/** How much of the guest's stderr is kept (the tail). */
const STDERR_TAIL_BYTES = 8 * 1024;

sockets._denyTcp();
sockets._denyUdp();
sockets._denyDnsLookup();

/** A guest's `exit`: it ends the call with this error. */
export class GuestExit extends Error {
  constructor(code) {
    super(`the component called exit (status ${code}) instead of returning`);
    this.name = 'GuestExit';
  }
}

/** An output stream that keeps the tail of what is written (or nothing). */
class CapturedOutput {
  #keep;
  #tail = Buffer.alloc(0);
  /** @param {number} keep bytes of the tail to keep (0: discard) */
  constructor(keep) {
    this.#keep = keep;
  }
  /** The kept tail, as text. */
  text() {
    return this.#tail.toString('utf8');
  }
  #take(bytes) {
    if (this.#keep === 0) return;
    const all = Buffer.concat([this.#tail, Buffer.from(bytes)]);
    this.#tail = all.subarray(Math.max(0, all.length - this.#keep));
  }
  checkWrite() {
    return 1n << 20n;
  }
  write(bytes) {
    this.#take(bytes);
  }
  blockingWriteAndFlush(bytes) {
    this.#take(bytes);
  }
  flush() {}
  blockingFlush() {}
  writeZeroes(len) {
    this.#take(new Uint8Array(Number(len)));
  }
  blockingWriteZeroesAndFlush(len) {
    this.writeZeroes(len);
  }
  splice() {
    throw { tag: 'closed' };
  }
  blockingSplice() {
    throw { tag: 'closed' };
  }
  subscribe() {
    return readyPollable();
  }
  [symbolDispose]() {}
}

/** Stdin: closed from the start. */
class EmptyInput {
  read() {
    throw { tag: 'closed' };
  }
  blockingRead() {
    throw { tag: 'closed' };
  }
  skip() {
    throw { tag: 'closed' };
  }
  blockingSkip() {
    throw { tag: 'closed' };
  }
  subscribe() {
    return readyPollable();
  }
  [symbolDispose]() {}
}

/**
 * The imports of one instance, keyed as jco's instantiation mode names them
 * (without versions: the host checks the contract's version itself).
 *
 * @param {object} options
 * @param {(level: string, message: string) => void} options.log the host's log
 * @param {ReturnType<import('./egress.mjs').egressPolicy>} options.egress
 * @returns {{ imports: Record<string, object>, stderrTail: () => string }}
 */
export function connectorImports({ log, egress }) {
  const stderr = new CapturedOutput(STDERR_TAIL_BYTES);
  const stdout = new CapturedOutput(0);
  const stdin = new EmptyInput();
  class InputStream {
    static [Symbol.hasInstance](value) {
      return value instanceof egress.InputStream || value instanceof EmptyInput;
    }
  }
  class OutputStream {
    static [Symbol.hasInstance](value) {
      return value instanceof ShimOutputStream || value instanceof CapturedOutput;
    }
  }
  const imports = {
    'exposure:connector/log': { log: (level, message) => log(level, message) },
    'wasi:cli/environment': {
      getEnvironment: () => [],
      getArguments: () => [],
      initialCwd: () => undefined,
    },
    'wasi:cli/exit': {
      exit(status) {
        throw new GuestExit(status?.tag === 'err' ? 1 : 0);
      },
      exitWithCode(code) {
        throw new GuestExit(code);
      },
    },
    'wasi:cli/stdin': { getStdin: () => stdin },
    'wasi:cli/stdout': { getStdout: () => stdout },
    'wasi:cli/stderr': { getStderr: () => stderr },
    'wasi:cli/terminal-input': cli.terminalInput,
    'wasi:cli/terminal-output': cli.terminalOutput,
    'wasi:cli/terminal-stdin': { getTerminalStdin: () => undefined },
    'wasi:cli/terminal-stdout': { getTerminalStdout: () => undefined },
    'wasi:cli/terminal-stderr': { getTerminalStderr: () => undefined },
    'wasi:clocks/monotonic-clock': clocks.monotonicClock,
    'wasi:clocks/wall-clock': clocks.wallClock,
    'wasi:random/random': random.random,
    'wasi:random/insecure': random.insecure,
    'wasi:random/insecure-seed': random.insecureSeed,
    'wasi:io/error': shimIo.error,
    'wasi:io/poll': shimIo.poll,
    'wasi:io/streams': { InputStream, OutputStream },
    'wasi:http/types': egress.types,
    'wasi:http/outgoing-handler': egress.handler,
    'wasi:filesystem/types': filesystem.types,
    'wasi:filesystem/preopens': { getDirectories: () => [] },
    'wasi:sockets/network': sockets.network,
    'wasi:sockets/instance-network': sockets.instanceNetwork,
    'wasi:sockets/ip-name-lookup': sockets.ipNameLookup,
    'wasi:sockets/tcp': sockets.tcp,
    'wasi:sockets/tcp-create-socket': sockets.tcpCreateSocket,
    'wasi:sockets/udp': sockets.udp,
    'wasi:sockets/udp-create-socket': sockets.udpCreateSocket,
  };
  return { imports, stderrTail: () => stderr.text() };
}
