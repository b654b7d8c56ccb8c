/**
 * `[auth]` and the secrets it names → the one header the host attaches to
 * every request the component sends, in the format the component declared
 * in `info` (`auth-method`). The component never sees it.
 *
 * Basic and API keys are supported; OAuth 2.0 (a token broker with renewal)
 * is `connector-host`'s alone, and asking for it here says so.
 *
 * @module credential
 */

import { configFailure } from './failure.mjs';
import { readSecret } from './secrets.mjs';

/**
 * The credential: a header name (lower case) and its value. `value` is the
 * secret; nothing in this host prints it.
 *
 * @typedef {{ header: string, value: string }} Credential
 */

const METHODS = ['basic', 'oauth2-client-credentials', 'oauth2-password', 'api-key'];

/**
 * Builds the credential `[auth]` describes, checking the component declared
 * the method. `null` when there is no `[auth]`.
 *
 * @param {Record<string, string>|null} auth the `[auth]` table
 * @param {Array<{tag: string, val?: any}>} declared the component's `auth-methods`
 * @param {Record<string, string|undefined>} env where `*_env` secrets are read
 * @returns {Credential|null}
 */
export function credentialFromConfig(auth, declared, env) {
  if (!auth) return null;
  const method = auth.method;
  const notDeclared = () =>
    configFailure(
      `[auth] method = "${method}", but the component does not declare it; use a method it declares (see \`connector-host info --plugin FILE\`)`,
    );
  switch (method) {
    case 'basic': {
      if (!declared.some((m) => m.tag === 'basic')) throw notDeclared();
      const username = required(auth, 'username', method);
      if (username.includes(':')) {
        throw configFailure('[auth] username must not contain `:` (Basic authentication cannot carry it)');
      }
      const password = readSecret('password', auth.password_env, auth.password_file, env);
      const token = Buffer.from(`${username}:${password}`, 'utf8').toString('base64');
      return { header: 'authorization', value: `Basic ${token}` };
    }
    case 'api-key':
      return apiKey(auth, declared, env, notDeclared);
    case 'oauth2-client-credentials':
    case 'oauth2-password':
      throw configFailure(
        `[auth] method = "${method}" is supported by connector-host, not by the Node host (it keeps no OAuth token broker); use basic or api-key here, or run connector-host`,
      );
    default:
      throw configFailure(`[auth] method = "${method}" is unknown; use one of: ${METHODS.join(', ')}`);
  }
}

/** The key, written in the first declared format that accepts it. */
function apiKey(auth, declared, env, notDeclared) {
  const formats = declared.filter((m) => m.tag === 'api-key').map((m) => m.val);
  if (formats.length === 0) throw notDeclared();
  const key = readSecret('api key', auth.api_key_env, auth.api_key_file, env);
  const format = formats.find((f) => f.keyPrefix == null || key.startsWith(f.keyPrefix));
  if (!format) {
    const prefixes = formats.map((f) => f.keyPrefix).filter((p) => p != null);
    throw configFailure(
      `the API key has none of the formats the component declares (keys starting with ${prefixes.join(' or ')}); check that it is the right key`,
    );
  }
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(format.headerName)) {
    throw configFailure(`the component declared an invalid API key header \`${format.headerName}\``);
  }
  const value = `${format.valuePrefix ?? ''}${key}`;
  if (/[\r\n\0]/.test(value)) {
    throw configFailure('the API key contains characters that cannot be sent in an HTTP header');
  }
  return { header: format.headerName.toLowerCase(), value };
}

function required(auth, key, method) {
  const value = auth[key];
  if (!value) throw configFailure(`[auth] method = "${method}" needs \`${key} = "..."\``);
  return value;
}
