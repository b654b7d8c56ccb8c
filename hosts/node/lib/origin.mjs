/**
 * The one origin (scheme, host, port) a component may contact: the value of
 * the setting the component declares as its endpoint. The same rules as
 * `connector-host`'s `sandbox/src/origin.rs`.
 *
 * @module origin
 */

import { isIP } from 'node:net';

/** Scheme, lower-case host (IPv6 without brackets) and port of the endpoint. */
export class Origin {
  /**
   * @param {'https'|'http'} scheme
   * @param {string} host
   * @param {number} port
   */
  constructor(scheme, host, port) {
    this.scheme = scheme;
    this.host = host;
    this.port = port;
  }

  /**
   * Parses the endpoint setting's value: `host`, `host:port`,
   * `https://host[:port]`, or `http://LOOPBACK-IP:port`. User information,
   * paths, queries and plain http to anything but a loopback address are
   * refused with a message that says what to write instead.
   *
   * @param {string} setting the setting's name
   * @param {string} value its value
   * @returns {Origin}
   */
  static parse(setting, value) {
    const bad = (why) =>
      new Error(
        `the endpoint setting ${setting} = "${value}" is not allowed: ${why}. Write the host name, e.g. ${setting} = "source.example.com" or "https://source.example.com:8443"`,
      );
    let scheme = 'https';
    let rest = value;
    const sep = value.indexOf('://');
    if (sep >= 0) {
      const given = value.slice(0, sep);
      if (given !== 'https' && given !== 'http') {
        throw bad(`the scheme \`${given}\` is not supported (https only)`);
      }
      scheme = given;
      rest = value.slice(sep + 3);
    }
    if (rest.endsWith('/')) rest = rest.slice(0, -1);
    // The host and port alone, as the operator should write them.
    const cut = rest.search(/[/?#\\]/);
    const authority = cut < 0 ? rest : rest.slice(0, cut);
    const beyond = cut < 0 ? '' : rest.slice(cut);
    if (rest.includes('@')) {
      // What comes before `@` may be a password (one with a `/` too): the
      // value is not repeated, only the host after it.
      const at = authority.lastIndexOf('@');
      const write =
        at >= 0 ? `Write ${setting} = "${scheme}://${authority.slice(at + 1)}"` : `Write the host name alone, e.g. ${setting} = "source.example.com"`;
      throw new Error(
        `the endpoint setting ${setting} holds user information (\`…@\`), which is not allowed: credentials go in [auth], never in the address. ${write}`,
      );
    }
    if (beyond !== '') {
      throw new Error(
        `the endpoint setting ${setting} = "${value}" is not allowed: it contains a path, query or fragment (\`${beyond}\`). Write the host alone: ${setting} = "${scheme}://${authority}"`,
      );
    }
    if (/[\s\p{Cc}]/u.test(rest)) throw bad('it contains spaces or control characters');
    const { host, port } = splitAuthority(rest, scheme);
    if (host === undefined || port === undefined) throw bad('it is not a host name');
    if (host === '') throw bad('it has no host name');
    const origin = new Origin(scheme, host, port);
    if (scheme === 'http' && !origin.isLoopbackIp()) {
      throw bad('plain http is only allowed to a loopback address such as http://127.0.0.1:PORT');
    }
    return origin;
  }

  /** Whether the host is a loopback IP literal (127.0.0.0/8 or ::1). */
  isLoopbackIp() {
    const family = isIP(this.host);
    if (family === 4) return this.host.split('.')[0] === '127';
    if (family === 6) return /^(0{0,4}:){1,7}:?0{0,3}1$|^::1$/.test(this.host);
    return false;
  }

  /** `host:port`, IPv6 in brackets. */
  authority() {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /**
   * Whether a request's scheme and authority (as the guest set them on its
   * `outgoing-request`) name exactly this origin.
   *
   * @param {string|undefined} scheme `http` or `https` (any case)
   * @param {string|undefined} authority `host[:port]` as the guest wrote it
   */
  matches(scheme, authority) {
    if (!scheme || scheme.toLowerCase() !== this.scheme) return false;
    if (!authority || authority.includes('@')) return false;
    const { host, port } = splitAuthority(authority, this.scheme);
    return host !== undefined && host === this.host && port === this.port;
  }

  toString() {
    return `${this.scheme}://${this.authority()}`;
  }
}

/**
 * `host[:port]` → lower-case host and port (the scheme's default when
 * absent); `undefined` parts when it is not an authority.
 */
function splitAuthority(authority, scheme) {
  const defaultPort = scheme === 'https' ? 443 : 80;
  let host;
  let portText;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0) return {};
    host = authority.slice(1, end);
    const after = authority.slice(end + 1);
    if (after !== '' && !after.startsWith(':')) return {};
    portText = after === '' ? undefined : after.slice(1);
    if (isIP(host) !== 6) return {};
  } else {
    const parts = authority.split(':');
    if (parts.length > 2) return {};
    [host, portText] = parts;
    if (!/^[A-Za-z0-9.-]*$/.test(host)) return {};
  }
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) return {};
    port = Number(portText);
  }
  return { host: host.toLowerCase(), port };
}
