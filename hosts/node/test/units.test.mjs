// Unit tests of the Node host's pure pieces: the endpoint origin, the
// configuration, the credential, the retry decision and the imports'
// environment. The end-to-end tests (tests/tests/e2e/node.rs) run the host
// against the emulator.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cli } from '@bytecodealliance/preview2-shim';
import { parseConfig } from '../lib/config.mjs';
import { credentialFromConfig } from '../lib/credential.mjs';
import { egressPolicy, streamErrorCode } from '../lib/egress.mjs';
import { Origin } from '../lib/origin.mjs';
import { decide, recordKey } from '../lib/read.mjs';
import { connectorImports } from '../lib/sandbox.mjs';

test('the endpoint origin is parsed and matched as connector-host does', () => {
  const o = Origin.parse('instance', 'Contoso.service-now.com');
  assert.equal(o.toString(), 'https://contoso.service-now.com:443');
  assert.ok(o.matches('https', 'CONTOSO.service-now.com:443'));
  assert.ok(o.matches('HTTPS', 'contoso.service-now.com'));
  assert.ok(!o.matches('http', 'contoso.service-now.com'));
  assert.ok(!o.matches('https', 'contoso.service-now.com:8443'));
  assert.ok(!o.matches('https', 'evil.com@contoso.service-now.com'));
  assert.ok(!o.matches('https', 'evil.com'));
  const loopback = Origin.parse('instance', 'http://127.0.0.1:8080');
  assert.ok(loopback.matches('http', '127.0.0.1:8080'));
  assert.ok(Origin.parse('instance', 'http://[::1]:80').isLoopbackIp());
  for (const bad of [
    'evil.com@contoso.service-now.com',
    'https://contoso.service-now.com/path',
    'https://contoso.service-now.com?x=1',
    'http://contoso.service-now.com',
    'http://localhost.evil.com:80',
    'http://10.0.0.1:80',
    'ftp://contoso',
    '',
  ]) {
    assert.throws(() => Origin.parse('instance', bad), /is not allowed/, bad);
  }
});

test('a refused endpoint says what to write and never repeats user information', () => {
  assert.throws(
    () => Origin.parse('instance', 'https://contoso.service-now.com/now/nav/ui/classic/params/target/x.do'),
    (e) => e.message.includes('contains a path') && e.message.includes('instance = "https://contoso.service-now.com"'),
  );
  assert.throws(
    () => Origin.parse('instance', 'https://admin:Hunter2@contoso.service-now.com:8443/x'),
    (e) =>
      !e.message.includes('Hunter2') &&
      !e.message.includes('admin') &&
      e.message.includes('instance = "https://contoso.service-now.com:8443"'),
  );
  assert.throws(
    () => Origin.parse('instance', 'svc:pa/ss@contoso.service-now.com'),
    (e) => !e.message.includes('pa/ss') && e.message.includes('user information'),
  );
});

test('the configuration refuses unknown keys and never quotes a line', () => {
  assert.throws(() => parseConfig("database='a'\nbogus=1\n", '.'), /unknown key `bogus`/);
  assert.throws(() => parseConfig("[sync]\npartitions = 0\n", '.'), /at least 1/);
  let message = '';
  try {
    parseConfig("[auth]\nmethod='basic'\npassword='hunter2\n", '.');
  } catch (e) {
    message = e.message;
  }
  assert.match(message, /line 3/);
  assert.doesNotMatch(message, /hunter2/);
  const c = parseConfig("database='a'\n[settings]\ninstance='x.y'\npage=5\nflag=true\n[auth]\nmethod='basic'\npassword_file='pw'\n", '/etc/x');
  assert.deepEqual(c.settings, [['instance', 'x.y'], ['page', '5'], ['flag', 'true']]);
  assert.equal(c.auth.password_file, '/etc/x/pw');
  assert.equal(c.sync.partitions, 4);
});

test('credentials are written as the component declares, from owner-only files', () => {
  const basic = credentialFromConfig({ method: 'basic', username: 'u', password_env: 'PW' }, [{ tag: 'basic' }], { PW: 'p' });
  assert.deepEqual(basic, { header: 'authorization', value: `Basic ${Buffer.from('u:p').toString('base64')}` });
  const keys = [
    { tag: 'api-key', val: { headerName: 'Authorization', valuePrefix: 'Bearer ', keyPrefix: 'nbt_' } },
    { tag: 'api-key', val: { headerName: 'Authorization', valuePrefix: 'Token ', keyPrefix: undefined } },
  ];
  assert.equal(credentialFromConfig({ method: 'api-key', api_key_env: 'K' }, keys, { K: 'nbt_x' }).value, 'Bearer nbt_x');
  assert.equal(credentialFromConfig({ method: 'api-key', api_key_env: 'K' }, keys, { K: 'abc' }).value, 'Token abc');
  assert.throws(() => credentialFromConfig({ method: 'api-key', api_key_env: 'K' }, [{ tag: 'basic' }], { K: 'k' }), /does not declare it/);
  assert.throws(() => credentialFromConfig({ method: 'basic', username: 'u', password_env: 'PW' }, [{ tag: 'basic' }], {}), /PW .* is not set/);
  const dir = mkdtempSync(join(tmpdir(), 'node-host-'));
  const file = join(dir, 'pw');
  writeFileSync(file, 's3cret\n');
  chmodSync(file, 0o640);
  assert.throws(() => credentialFromConfig({ method: 'basic', username: 'u', password_file: file }, [{ tag: 'basic' }], {}), /chmod 600/);
  chmodSync(file, 0o600);
  const fromFile = credentialFromConfig({ method: 'basic', username: 'u', password_file: file }, [{ tag: 'basic' }], {});
  assert.equal(fromFile.value, `Basic ${Buffer.from('u:s3cret').toString('base64')}`);
  rmSync(dir, { recursive: true });
});

test('retries follow the contract: Retry-After when given, back-off otherwise, then give up', () => {
  const sync = { max_attempts: 3, retry_base_ms: 100, retry_max_ms: 1000, max_retry_after_seconds: 60 };
  const limited = (s) => ({ tag: 'rate-limited', val: { retryAfterSeconds: s, message: 'slow down' } });
  assert.deepEqual(decide(sync, limited(7), 0), { waitMs: 7000, serverAsked: true });
  assert.equal(decide(sync, limited(61), 0), null);
  const waited = decide(sync, { tag: 'temporarily-unavailable', val: 'x' }, 1, () => 0.999);
  assert.ok(waited.waitMs >= 100 && waited.waitMs <= 200, JSON.stringify(waited));
  assert.equal(decide(sync, { tag: 'temporarily-unavailable', val: 'x' }, 2), null);
  assert.equal(decide(sync, { tag: 'unauthenticated', val: 'x' }, 0), null);
});

test('record keys are stored as connector-host stores them', () => {
  assert.equal(recordKey({ id: 42 }, 'id'), '42');
  assert.equal(recordKey({ sysId: 'abc' }, 'sysId'), 'abc');
  assert.equal(recordKey({ sysId: '' }, 'sysId'), undefined);
  assert.equal(recordKey({ id: 1.5 }, 'id'), undefined);
  assert.equal(recordKey([], 'id'), undefined);
});

test('the guest sees no environment, though the shim would show the process one', () => {
  const egress = egressPolicy({ origin: null, credential: null, limits: { request_timeout_seconds: 1, max_response_mib: 1, max_requests_per_run: 1 }, log: () => {} });
  const { imports } = connectorImports({ log: () => {}, egress });
  assert.deepEqual(imports['wasi:cli/environment'].getEnvironment(), []);
  assert.deepEqual(imports['wasi:cli/environment'].getArguments(), []);
  // The control: preview2-shim's own environment import hands out the
  // process environment (as it was when the shim loaded: PATH is in it).
  assert.ok(cli.environment.getEnvironment().some(([k]) => k === 'PATH'));
});

test('forbidden headers are refused and counted; others pass', () => {
  const warnings = [];
  const egress = egressPolicy({
    origin: Origin.parse('instance', 'http://127.0.0.1:1'),
    credential: { header: 'x-api-key', value: 'k' },
    limits: { request_timeout_seconds: 1, max_response_mib: 1, max_requests_per_run: 1 },
    log: (level, message) => warnings.push(message),
  });
  const fields = new egress.types.Fields();
  for (const name of ['Authorization', 'cookie', 'x-api-key', 'host']) {
    assert.throws(() => fields.set(name, [new Uint8Array([97])]), (e) => e.tag === 'forbidden', name);
  }
  assert.throws(() => egress.types.Fields.fromList([['set-cookie', new Uint8Array([97])]]), (e) => e.tag === 'forbidden');
  fields.append('accept', new TextEncoder().encode('application/json'));
  assert.equal(fields.get('accept').length, 1);
  // A clone is no way round: it is guarded too, and keeps what was allowed.
  const copy = fields.clone();
  assert.equal(copy.get('accept').length, 1);
  assert.throws(() => copy.set('authorization', [new Uint8Array([97])]), (e) => e.tag === 'forbidden');
  assert.equal(egress.counters.forbiddenHeaderAttempts, 6);
  assert.equal(warnings.length, 6);
});

test('requests leave only for the endpoint, only as GET or HEAD, never while describing', () => {
  const policy = (origin) =>
    egressPolicy({
      origin,
      credential: null,
      limits: { request_timeout_seconds: 1, max_response_mib: 1, max_requests_per_run: 0 },
      log: () => {},
    });
  const request = (types, authority, method = { tag: 'get' }) => {
    const r = new types.OutgoingRequest(new types.Fields());
    r.setScheme({ tag: 'HTTP' });
    r.setAuthority(authority);
    r.setPathWithQuery('/');
    r.setMethod(method);
    return r;
  };
  const denied = (e) => e.tag === 'HTTP-request-denied';
  const describing = policy(null);
  assert.throws(() => describing.handler.handle(request(describing.types, '127.0.0.1:9')), denied);
  const reading = policy(Origin.parse('instance', 'http://127.0.0.1:9'));
  assert.throws(() => reading.handler.handle(request(reading.types, 'localhost:9')), denied);
  assert.throws(() => reading.handler.handle(request(reading.types, '127.0.0.1:9', { tag: 'post' })), denied);
  assert.equal(reading.counters.denied, 2);
  // The control: the endpoint itself passes the policy, and meets the run's cap (0 here).
  assert.throws(() => reading.handler.handle(request(reading.types, '127.0.0.1:9')), (e) => e.tag === 'connection-limit-reached');
});

test('a body whose connection failed gives the guest an error-code, never the Node error', () => {
  const logged = [];
  const log = (level, message) => logged.push(`${level}: ${message}`);
  const nodeError = (message, code) => Object.assign(new Error(message), { code });
  const given = { tag: 'HTTP-request-body-size', val: 3n };
  assert.equal(streamErrorCode(given, log), given);
  assert.deepEqual(streamErrorCode(nodeError('aborted', 'ECONNRESET'), log), {
    tag: 'HTTP-response-incomplete',
  });
  assert.deepEqual(streamErrorCode(nodeError('read ECONNRESET', 'ECONNRESET'), log), {
    tag: 'connection-terminated',
  });
  assert.deepEqual(streamErrorCode(nodeError('read ETIMEDOUT', 'ETIMEDOUT'), log), {
    tag: 'connection-read-timeout',
  });
  assert.deepEqual(streamErrorCode(undefined, log), { tag: 'HTTP-response-incomplete' });
  assert.ok(logged.every((line) => line.startsWith('debug: a response body failed')), logged.join('\n'));
  assert.equal(logged.length, 4);
});
