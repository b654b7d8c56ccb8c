/**
 * The outbound HTTP policy: the host's own `wasi:http/outgoing-handler`,
 * wrapping preview2-shim's, and the `wasi:http/types` resources the
 * component sees. The same rules as `connector-host`'s
 * `sandbox/src/egress.rs`:
 *
 * - only the configured origin (scheme, host, port) is reachable; anything
 *   else gets `HTTP-request-denied`, counted and logged;
 * - only GET and HEAD are sent (connectors read; this host sends no bodies);
 * - `authorization`, `cookie`, `set-cookie`, the API key's header and the
 *   hop-by-hop headers are forbidden: the guest can neither set them
 *   (`header-error.forbidden`) nor see them in responses;
 * - the host attaches the credential on the way out, on a copy of the
 *   request the guest never holds;
 * - the guest's time-outs are clamped to `[limits] request_timeout_seconds`;
 *   a response body over `[limits] max_response_mib` is refused when its
 *   `Content-Length` says so, or cut off with `HTTP-response-body-size`
 *   when it passes the cap;
 * - a run sends at most `[limits] max_requests_per_run` requests.
 *
 * jco checks a resource the host hands the guest with `instanceof` against
 * the class given in the imports. Where the guest must see our wrapper
 * (responses, bodies, capped streams) the import is our class; where both
 * the shim's objects and ours flow (fields, input streams) the import is a
 * class whose `Symbol.hasInstance` accepts either.
 *
 * @module egress
 */

import { http as shimHttp, io as shimIo, clocks } from '@bytecodealliance/preview2-shim';

const Shim = shimHttp.types;
const ShimInputStream = shimIo.streams.InputStream;
const IoError = shimIo.error.Error;
const symbolDispose = Symbol.dispose || Symbol.for('dispose');

/**
 * Headers the guest may neither set nor see: credentials and cookies, and
 * the hop-by-hop headers wasmtime-wasi-http forbids
 * (`DEFAULT_FORBIDDEN_HEADERS`).
 */
export const FORBIDDEN_HEADERS = new Set([
  'authorization',
  'cookie',
  'set-cookie',
  'proxy-authorization',
  'proxy-authenticate',
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'http2-settings',
]);

/** Counters of one run, for the summary and the tests. */
export class EgressCounters {
  requests = 0;
  bytes = 0;
  denied = 0;
  forbiddenHeaderAttempts = 0;
}

/**
 * The policy of one run.
 *
 * @param {object} options
 * @param {import('./origin.mjs').Origin|null} options.origin the only origin allowed (null: none)
 * @param {import('./credential.mjs').Credential|null} options.credential attached to every request
 * @param {{request_timeout_seconds: number, max_response_mib: number, max_requests_per_run: number}} options.limits
 * @param {(level: string, message: string) => void} options.log the host's log
 * @returns {{ handler: object, types: object, InputStream: Function, counters: EgressCounters }}
 *   the `wasi:http/outgoing-handler` and `wasi:http/types` imports, the
 *   `InputStream` class for `wasi:io/streams`, and the counters
 */
export function egressPolicy({ origin, credential, limits, log }) {
  const counters = new EgressCounters();
  const guarded = credential?.header;
  const isForbidden = (name) => {
    const lower = String(name).toLowerCase();
    return FORBIDDEN_HEADERS.has(lower) || lower === guarded;
  };
  const refuse = (name) => {
    counters.forbiddenHeaderAttempts += 1;
    log('warn', `the component tried to set the forbidden header \`${String(name).toLowerCase()}\``);
    throw { tag: 'forbidden' };
  };
  const maxBody = limits.max_response_mib * 1024 * 1024;
  const policy = { origin, credential, limits, counters, isForbidden, maxBody, log };

  const Fields = guardedFieldsClass(isForbidden, refuse);
  const classes = responseClasses(policy, Fields);
  const handler = {
    handle(request, options) {
      return classes.wrapFuture(send(policy, request, options));
    },
  };
  const types = {
    ...Shim,
    Fields,
    FutureIncomingResponse: classes.FutureIncomingResponse,
    IncomingResponse: classes.IncomingResponse,
    IncomingBody: classes.IncomingBody,
    httpErrorCode(err) {
      if (err instanceof BodyTooLarge) return err.payload;
      return streamErrorCode(Shim.httpErrorCode(err), log);
    },
  };
  return { handler, types, InputStream: classes.InputStream, counters };
}

/**
 * `fields` whose mutations refuse forbidden names. Its `instanceof` also
 * accepts the shim's own fields (a response's trailers).
 */
function guardedFieldsClass(isForbidden, refuse) {
  class Fields extends Shim.Fields {
    static fromList(entries) {
      const fields = new Fields();
      for (const [name, value] of entries) fields.append(name, value);
      return fields;
    }
    set(name, values) {
      if (isForbidden(name)) refuse(name);
      return super.set(name, values);
    }
    append(name, value) {
      if (isForbidden(name)) refuse(name);
      return super.append(name, value);
    }
    delete(name) {
      if (isForbidden(name)) refuse(name);
      return super.delete(name);
    }
    /** A mutable copy that is guarded too (the shim's would not be). */
    clone() {
      return Fields.fromList(this.entries());
    }
    static [Symbol.hasInstance](value) {
      return value instanceof Shim.Fields;
    }
  }
  return Fields;
}

/** Scheme of a `wasi:http` `scheme` variant, lower case. */
function schemeName(scheme) {
  if (!scheme) return undefined;
  if (scheme.tag === 'HTTP') return 'http';
  if (scheme.tag === 'HTTPS') return 'https';
  return String(scheme.val).toLowerCase();
}

/**
 * Checks the guest's request, copies it with the credential attached and
 * the time-outs clamped, and sends the copy through the shim. Throws the
 * `error-code` the guest receives when the request is refused.
 */
function send(policy, request, options) {
  const { origin, credential, limits, counters, isForbidden, log } = policy;
  const scheme = schemeName(request.scheme());
  if (!origin?.matches(scheme, request.authority())) {
    counters.denied += 1;
    const allowed = origin ? `allowed: ${origin}` : 'no request is allowed while the host asks for `info`';
    log('warn', `request denied: not the configured endpoint (the component asked for ${scheme ?? '?'}://${request.authority() ?? '?'}; ${allowed})`);
    throw { tag: 'HTTP-request-denied' };
  }
  const method = request.method();
  if (method.tag !== 'get' && method.tag !== 'head') {
    counters.denied += 1;
    log('warn', `request denied: the Node host sends only GET and HEAD (the component asked for ${method.val ?? method.tag})`);
    throw { tag: 'HTTP-request-denied' };
  }
  if (counters.requests >= limits.max_requests_per_run) {
    log('warn', `request denied: the run reached its cap of ${limits.max_requests_per_run} requests ([limits] max_requests_per_run)`);
    throw { tag: 'connection-limit-reached' };
  }
  const headers = request.headers().entries().filter(([name]) => !isForbidden(name));
  if (credential) headers.push([credential.header, new TextEncoder().encode(credential.value)]);
  const copy = new Shim.OutgoingRequest(Shim.Fields.fromList(headers));
  copy.setMethod(method);
  copy.setScheme(request.scheme());
  copy.setAuthority(request.authority());
  copy.setPathWithQuery(request.pathWithQuery());
  Shim.OutgoingBody.finish(copy.body(), undefined);
  counters.requests += 1;
  return shimHttp.outgoingHandler.handle(copy, clampedOptions(options, limits));
}

/** The guest's time-outs, none above the cap (the cap where it set none). */
function clampedOptions(options, limits) {
  const max = BigInt(limits.request_timeout_seconds) * 1_000_000_000n;
  const cap = (value) => (value === undefined || value > max ? max : value);
  const clamped = new Shim.RequestOptions();
  clamped.setConnectTimeout(cap(options?.connectTimeout()));
  clamped.setFirstByteTimeout(cap(options?.firstByteTimeout()));
  clamped.setBetweenBytesTimeout(cap(options?.betweenBytesTimeout()));
  return clamped;
}

/** The `wasi:io/error` a capped body fails with; `http-error-code` maps it. */
class BodyTooLarge extends IoError {
  constructor(max) {
    super({ tag: 'HTTP-response-body-size', val: BigInt(max) });
    this.max = max;
  }
  toDebugString() {
    return `the response body passed the cap of ${this.max} bytes ([limits] max_response_mib)`;
  }
}

/**
 * The response-side resources the guest sees: the future, the response
 * (headers stripped of what the guest may not see), its body and the body's
 * stream (capped and counted).
 */
function responseClasses(policy, Fields) {
  const { counters, isForbidden, maxBody, log } = policy;
  const CappedInputStream = cappedInputStreamClass(counters, maxBody);
  const { IncomingBody, IncomingResponse } = incomingClasses(
    responseFieldsClass(Fields, isForbidden),
    CappedInputStream,
  );

  /** `input-stream`: the shim's (stdin, files) or a capped body. */
  class InputStream {
    static [Symbol.hasInstance](value) {
      return value instanceof ShimInputStream || value instanceof CappedInputStream;
    }
  }

  class FutureIncomingResponse {
    #inner;
    constructor(inner) {
      this.#inner = inner;
    }
    subscribe() {
      return this.#inner.subscribe();
    }
    get() {
      const result = this.#inner.get();
      if (result?.tag === 'ok' && result.val.tag === 'err') {
        return { tag: 'ok', val: { tag: 'err', val: classified(result.val.val, log) } };
      }
      if (result?.tag !== 'ok') return result;
      const response = result.val.val;
      const declared = declaredLength(response.headers());
      if (declared !== undefined && declared > maxBody) {
        response[symbolDispose]?.();
        return { tag: 'ok', val: { tag: 'err', val: { tag: 'HTTP-response-body-size', val: BigInt(declared) } } };
      }
      return { tag: 'ok', val: { tag: 'ok', val: new IncomingResponse(response) } };
    }
    [symbolDispose]() {
      this.#inner[symbolDispose]?.();
    }
  }

  return {
    FutureIncomingResponse,
    IncomingResponse,
    IncomingBody,
    InputStream,
    wrapFuture: (inner) => new FutureIncomingResponse(inner),
  };
}

/** Response headers: immutable, the names `isForbidden` says removed. */
function responseFieldsClass(Fields, isForbidden) {
  return class ResponseFields extends Fields {
    #locked = false;
    static of(entries) {
      const fields = new ResponseFields();
      for (const [name, value] of entries) {
        if (!isForbidden(name)) Shim.Fields.prototype.append.call(fields, name, value);
      }
      fields.#locked = true;
      return fields;
    }
    set() {
      if (this.#locked) throw { tag: 'immutable' };
    }
    append() {
      if (this.#locked) throw { tag: 'immutable' };
    }
    delete() {
      if (this.#locked) throw { tag: 'immutable' };
    }
  };
}

/**
 * A body's stream that counts what it reads into `counters.bytes` and fails
 * with `BodyTooLarge` once the body passes `maxBody` bytes.
 */
function cappedInputStreamClass(counters, maxBody) {
  return class CappedInputStream {
    #inner;
    #seen = 0;
    constructor(inner) {
      this.#inner = inner;
    }
    #count(chunk) {
      this.#seen += chunk.byteLength;
      counters.bytes += chunk.byteLength;
      if (this.#seen > maxBody) {
        throw { tag: 'last-operation-failed', val: new BodyTooLarge(maxBody) };
      }
      return chunk;
    }
    read(len) {
      return this.#count(this.#inner.read(len));
    }
    blockingRead(len) {
      return this.#count(this.#inner.blockingRead(len));
    }
    skip(len) {
      return this.#inner.skip(len);
    }
    blockingSkip(len) {
      return this.#inner.blockingSkip(len);
    }
    subscribe() {
      return this.#inner.subscribe();
    }
    [symbolDispose]() {
      this.#inner[symbolDispose]?.();
    }
  };
}

/** The response and its body, as the guest sees them: `ResponseFields`, `CappedInputStream`. */
function incomingClasses(ResponseFields, CappedInputStream) {
  class IncomingBody {
    #inner;
    constructor(inner) {
      this.#inner = inner;
    }
    stream() {
      return new CappedInputStream(this.#inner.stream());
    }
    static finish(body) {
      return Shim.IncomingBody.finish(body.#inner);
    }
    [symbolDispose]() {
      this.#inner[symbolDispose]?.();
    }
  }

  class IncomingResponse {
    #inner;
    #headers;
    constructor(inner) {
      this.#inner = inner;
      this.#headers = ResponseFields.of(inner.headers().entries());
    }
    status() {
      return this.#inner.status();
    }
    headers() {
      return this.#headers;
    }
    consume() {
      return new IncomingBody(this.#inner.consume());
    }
    [symbolDispose]() {
      this.#inner[symbolDispose]?.();
    }
  }

  return { IncomingBody, IncomingResponse };
}

/**
 * The shim reports a failed TLS handshake as `internal-error` with Node's
 * message; the contract's connectors tell TLS from other failures by the
 * error code, as wasmtime-wasi-http gives it. The original text goes to the
 * log.
 */
function classified(code, log) {
  if (code?.tag !== 'internal-error') return code;
  const text = String(code.val ?? '');
  log('debug', `the request failed: ${text}`);
  if (/certificate|self[- ]signed|altnames/i.test(text)) return { tag: 'TLS-certificate-error' };
  if (/\b(SSL|TLS)\b|handshake/i.test(text)) return { tag: 'TLS-protocol-error' };
  return code;
}

/**
 * The `error-code` of a body's stream that failed. preview2-shim 0.26
 * returns the Node error itself when the connection failed under the body
 * (`aborted`, `ECONNRESET`), which is no `error-code`: lowered as one it
 * traps the guest. As `connector-host` says it
 * (`sandbox/src/transport_error.rs`): a body cut short is
 * `HTTP-response-incomplete`, a reset `connection-terminated`; the
 * original text goes to the log.
 *
 * @param {unknown} code what the shim's `http-error-code` returned
 * @param {(level: string, message: string) => void} log
 * @returns {object} an `error-code`
 */
export function streamErrorCode(code, log) {
  if (typeof code?.tag === 'string') return code;
  const failure = /** @type {{code?: string, message?: string}} */ (code ?? {});
  log('debug', `a response body failed: ${failure.code ?? ''} ${failure.message ?? String(code)}`);
  // Node names a body cut short by the server `aborted` (code ECONNRESET).
  if (failure.message === 'aborted') return { tag: 'HTTP-response-incomplete' };
  switch (failure.code) {
    case 'ECONNRESET':
    case 'EPIPE':
      return { tag: 'connection-terminated' };
    case 'ETIMEDOUT':
      return { tag: 'connection-read-timeout' };
    default:
      return { tag: 'HTTP-response-incomplete' };
  }
}

/** The `Content-Length` a response declares, if it is a number. */
function declaredLength(headers) {
  const values = headers.get('content-length');
  if (values.length !== 1) return undefined;
  const text = new TextDecoder().decode(values[0]).trim();
  return /^[0-9]+$/.test(text) ? Number(text) : undefined;
}

/** A pollable that is ready at once (for streams that never wait). */
export function readyPollable() {
  return clocks.monotonicClock.subscribeDuration(0n);
}
